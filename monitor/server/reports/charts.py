"""Inline SVG charts for the weekly report: pure functions from numbers to markup.

No script, no external reference, no ``xmlns`` URL (inline SVG in HTML does not need one), and
every piece of text passes through :func:`markupsafe.escape`, so a class called
``<script>alert(1)</script>`` is drawn as those characters. Sizes are in CSS pixels; the charts
scale with the page (``viewBox``) and print as vectors.

Large inputs stay small: the confusion heat map draws only non-zero cells, as one ``<path>`` per
colour bucket, so a 100-class matrix is a few dozen kilobytes rather than 10 000 ``<rect>``s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final, Literal, TypeGuard

from markupsafe import Markup, escape

from monitor.server.reports.data import ReliabilityCurve, Series

#: Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in grey print.
PALETTE: Final = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#7f7f7f", "#000000")
ALERT: Final = "#c0392b"
GRID: Final = "#e3e6ea"
AXIS: Final = "#5f6b7a"
#: Row shares (of the true class) that start each colour bucket of the heat map.
HEAT_BUCKETS: Final = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 0.8)
HEAT_COLOURS: Final = ("#eef4fb", "#d3e3f3", "#b0cde8", "#82b1da", "#5592c8", "#2f72b1", "#15528f", "#08306b")
#: The plot area of a line chart starts this far from the left edge and ends this far from the
#: right one (CSS pixels of its viewBox): what maps a pointer position to a time.
LINE_LEFT: Final = 52.0
LINE_RIGHT: Final = 12.0
_FONT: Final = 'font-family="system-ui, sans-serif"'
_CHAR_PX: Final = 6.2  # average glyph width at 11px, to lay out legends without measuring


#: How the y axis of a line chart is labelled: shares as percentages, latencies in ms, scores plain.
Unit = Literal["share", "ms", "score"]


@dataclass(frozen=True, slots=True)
class Threshold:
    """A horizontal reference line (an SLO bound, a detector threshold, a target)."""

    value: float
    label: str


def _n(x: float) -> str:
    """A coordinate with one decimal, without a trailing ``.0``."""
    text = f"{x:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _text(
    x: float, y: float, text: str, *, size: int = 11, anchor: str = "start", fill: str = AXIS, extra: str = ""
) -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" font-size="{size}" text-anchor="{anchor}" fill="{fill}"{extra}>'
        f"{escape(text)}</text>"
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and math.isfinite(value)


def nice_ticks(lo: float, hi: float, count: int = 4) -> list[float]:
    """About ``count`` round tick values covering ``[lo, hi]`` (steps of 1, 2, 2.5 or 5 × 10^k)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return [0.0, 1.0]
    if hi <= lo:
        hi = lo + (abs(lo) * 0.1 or 1.0)
    raw = (hi - lo) / max(count, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(lo / step) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < hi:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def tick_labels(ticks: Sequence[float], unit: Unit) -> list[str]:
    """Labels with the fewest decimals that still tell every tick apart (0.5 steps need one)."""
    scale, suffix = {"share": (100.0, "%"), "ms": (1.0, " ms"), "score": (1.0, "")}[unit]
    values = [t * scale for t in ticks]
    for digits in range(7):
        if all(abs(round(v, digits) - v) < 1e-9 * max(1.0, abs(v)) for v in values):
            break
    return [f"{v:.{digits}f}".replace("-", "\u2212") + suffix for v in values]


def _legend(items: Sequence[tuple[str, str, bool]], x: float, y: float, width: float) -> tuple[str, float]:
    """Swatches and labels ((label, colour, dashed)) wrapped to ``width``; returns (svg, height)."""
    parts, cx, cy = [], x, y
    for label, colour, dashed in items:
        label = _clip(label, 48)
        w = 22 + len(label) * _CHAR_PX + 14
        if cx > x and cx + w > x + width:
            cx, cy = x, cy + 16
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        parts.append(
            f'<line x1="{_n(cx)}" y1="{_n(cy - 4)}" x2="{_n(cx + 16)}" y2="{_n(cy - 4)}" stroke="{colour}" stroke-width="2.5"{dash}/>'
        )
        parts.append(_text(cx + 21, cy, label))
        cx += w
    return "".join(parts), cy - y + 16


def line_chart(
    series: Sequence[Series],
    *,
    start: datetime,
    end: datetime,
    title: str,
    unit: Unit,
    thresholds: Sequence[Threshold] = (),
    flagged: Sequence[tuple[datetime, datetime]] = (),
    shade_until: datetime | None = None,
    x_offset: timedelta = timedelta(0),
    y_range: tuple[float | None, float | None] = (None, None),
    marks: Sequence[tuple[datetime, str]] = (),
    width: int = 640,
    height: int = 190,
    attrs: Mapping[str, str] | None = None,
) -> Markup:
    """Lines over time with optional thresholds, labelled moments (``marks``: see :func:`_marks`;
    e.g. the bounds of the report's week on an axis fitted to the data), flagged spans
    (``[start, end)``, shaded red: e.g. the windows a drift detector flagged) and the span
    before ``shade_until`` shaded grey
    (last week, next to this week). None values are gaps. Points are drawn ``x_offset`` after
    their time (half a window: a day's value at noon). Without ``y_range``, the axis fits the
    data, never going below 0 for data that is not negative, and a share never above 100 %.
    ``attrs`` become attributes of the ``<svg>`` (the console's hover script reads them)."""
    left, right, top = LINE_LEFT, LINE_RIGHT, 10.0
    values = [v for s in series for _, v in s.points if _finite(v)] + [th.value for th in thresholds]
    lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or {"share": 0.01, "ms": 1.0, "score": 0.05}[unit]
    lo = y_range[0] if y_range[0] is not None else (lo - pad if lo - pad >= 0 or lo < 0 else 0.0)
    hi = y_range[1] if y_range[1] is not None else hi + pad
    if unit == "share" and y_range[1] is None and hi > 1.0 >= max(values, default=0.0):
        hi = 1.0  # a share cannot pass 100 %: padding must not draw an axis up to 120 %
    ticks = nice_ticks(lo, hi)
    lo, hi = min(lo, ticks[0]), max(hi, ticks[-1])
    legend_items = [(s.label, PALETTE[i % len(PALETTE)], False) for i, s in enumerate(series)]
    legend_items += [(th.label, ALERT, True) for th in thresholds]
    if flagged:
        legend_items.append(("flagged", "#f2b8b0", False))
    legend, legend_h = _legend(legend_items, left, 0, width - left - right)
    plot_h = height - top - 22.0
    total_h = height + (legend_h + 4 if legend_items else 0)
    span = (end - start).total_seconds() or 1.0

    def x_of(ts: datetime) -> float:
        return left + (width - left - right) * (ts - start).total_seconds() / span

    def y_of(v: float) -> float:
        return top + plot_h * (1 - (v - lo) / ((hi - lo) or 1.0))

    out = [_open(width, total_h, title, attrs)]
    if shade_until is not None and start < shade_until < end:
        out.append(
            f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(x_of(shade_until) - left)}" height="{_n(plot_h)}" fill="#f4f5f7"/>'
        )
        out.append(_text(left + 4, top + 11, "last week", size=10))
        out.append(_text(x_of(shade_until) + 4, top + 11, "this week", size=10))
    spans = "".join(
        f"M{_n(x_of(max(a, start)))} {_n(top)}H{_n(x_of(min(b, end)))}V{_n(top + plot_h)}H{_n(x_of(max(a, start)))}z"
        for a, b in _merge_spans(flagged)
        if b > start and a < end
    )
    if spans:
        out.append(f'<path fill="#f2b8b0" fill-opacity="0.6" d="{spans}"/>')
    for tick, label in zip(ticks, tick_labels(ticks, unit), strict=True):
        y = y_of(tick)
        out.append(f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(width - right)}" y2="{_n(y)}" stroke="{GRID}"/>')
        out.append(_text(left - 6, y + 4, label, anchor="end"))
    out.extend(_time_ticks(start, end, x_of, top + plot_h))
    out.extend(_marks(marks, start, end, x_of, top, plot_h, left, width - right, skip=shade_until))
    for th in thresholds:
        y = y_of(th.value)
        out.append(
            f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(width - right)}" y2="{_n(y)}" stroke="{ALERT}" stroke-width="1.5" stroke-dasharray="5 4"/>'
        )
    for i, s in enumerate(series):
        xy = [(x_of(ts + x_offset), y_of(v)) if _finite(v) else None for ts, v in s.points]
        out.append(_polyline(xy, PALETTE[i % len(PALETTE)]))
    if legend_items:
        out.append(f'<g transform="translate(0 {_n(height + 10)})">{legend}</g>')
    out.append("</svg>")
    return Markup("".join(out))


def _merge_spans(spans: Sequence[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """Touching or overlapping spans joined, so a run of flagged hours is one shape."""
    merged: list[tuple[datetime, datetime]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _open(width: float, height: float, title: str, attrs: Mapping[str, str] | None = None) -> str:
    extra = "".join(f' {escape(k)}="{escape(v)}"' for k, v in (attrs or {}).items())
    return (
        f'<svg class="chart" viewBox="0 0 {_n(width)} {_n(height)}" width="{_n(width)}" height="{_n(height)}" '
        f'role="img" aria-label="{escape(title)}" {_FONT}{extra}><title>{escape(title)}</title>'
    )


#: Hour steps of the time axis of spans up to two days, the first that keeps labels apart.
_HOUR_STEPS: Final = (1, 2, 3, 6, 12, 24)


def _time_ticks(start: datetime, end: datetime, x_of: Callable[[datetime], float], y: float) -> list[str]:
    """Day ticks (:func:`_day_ticks`) for spans over two days; for shorter ones hour ticks
    (``14:00``; midnight as the day, ``Tue 17``) with the first label naming the day, so a few
    hours of data read as a time of a known day, and no label overlapping the one before."""
    hours = (end - start).total_seconds() / 3600
    if hours > 48:
        return _day_ticks(start, end, x_of, y)
    out = [f'<line x1="{_n(x_of(start))}" y1="{_n(y)}" x2="{_n(x_of(end))}" y2="{_n(y)}" stroke="{AXIS}"/>']
    step = next((s for s in _HOUR_STEPS if hours / s <= 8), 24)
    tick = start.replace(minute=0, second=0, microsecond=0)
    if tick < start:
        tick += timedelta(hours=1)
    free = -math.inf  # where the last label ends: a label that would overlap it is left out
    while tick < end:
        if tick.hour % step == 0:
            x = x_of(tick)
            out.append(f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x)}" y2="{_n(y + 4)}" stroke="{AXIS}"/>')
            label = tick.strftime("%a %d") if tick.hour == 0 else tick.strftime("%H:%M")
            if free == -math.inf and tick.hour:
                label = tick.strftime("%a %d %H:%M")
            if x + 3 >= free:
                out.append(_text(x + 3, y + 15, label, size=10))
                free = x + 3 + len(label) * _CHAR_PX * 10 / 11 + 4
        tick += timedelta(hours=1)
    return out


def _day_ticks(start: datetime, end: datetime, x_of: Callable[[datetime], float], y: float) -> list[str]:
    """Midnight gridlines and day labels (``Mon 16``); every other label when days are many."""
    out = [f'<line x1="{_n(x_of(start))}" y1="{_n(y)}" x2="{_n(x_of(end))}" y2="{_n(y)}" stroke="{AXIS}"/>']
    day = start.replace(hour=0, minute=0, second=0, microsecond=0)
    if day < start:
        day += timedelta(days=1)
    days = max(1, int((end - start).total_seconds() // 86400))
    every = 1 if days <= 8 else 2
    i = 0
    while day <= end:
        x = x_of(day)
        out.append(f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x)}" y2="{_n(y + 4)}" stroke="{AXIS}"/>')
        if i % every == 0 and day < end:
            out.append(_text(x + 3, y + 15, day.strftime("%a %d"), size=10))
        day += timedelta(days=1)
        i += 1
    return out


def _marks(
    marks: Sequence[tuple[datetime, str]],
    start: datetime,
    end: datetime,
    x_of: Callable[[datetime], float],
    top: float,
    plot_h: float,
    x_min: float,
    x_max: float,
    *,
    skip: datetime | None,
) -> list[str]:
    """A moment inside the axis is a dotted vertical line with its label; one before or after it
    is an arrow at that edge (``◂ label``, ``label ▸``), so an axis fitted to a few hours still
    says where they sit; one at an edge, or at ``skip`` inside the axis (shaded already), needs
    nothing."""
    out = []
    for moment, label in marks:
        if moment in (start, end) or (moment == skip and start < moment < end):
            continue
        if start < moment < end:
            x = x_of(moment)
            out.append(f'<line x1="{_n(x)}" y1="{_n(top)}" x2="{_n(x)}" y2="{_n(top + plot_h)}" stroke="{AXIS}" stroke-dasharray="2 3"/>')
            out.append(_text(x + 3, top + plot_h - 4, label, size=10))
        elif moment < start:
            out.append(_text(x_min + 4, top + 11, f"◂ {label}", size=10))
        else:
            out.append(_text(x_max - 4, top + 11, f"{label} ▸", size=10, anchor="end"))
    return out


def _polyline(points: Sequence[tuple[float, float] | None], colour: str) -> str:
    """Runs of consecutive points as polylines; a point alone as a dot; dots on short series."""
    runs: list[list[tuple[float, float]]] = [[]]
    for p in points:
        if p is None:
            if runs[-1]:
                runs.append([])
        else:
            runs[-1].append(p)
    out = []
    dots = len(points) <= 40
    for run in runs:
        if len(run) > 1:
            coords = " ".join(f"{_n(x)},{_n(y)}" for x, y in run)
            out.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" stroke-linejoin="round"/>'
            )
        if len(run) == 1 or (dots and run):
            out.extend(f'<circle cx="{_n(x)}" cy="{_n(y)}" r="2.6" fill="{colour}"/>' for x, y in run)
    return "".join(out)


def heatmap(
    matrix: Sequence[Sequence[int]], labels: Sequence[str], *, title: str, size: int = 560, attrs: Mapping[str, str] | None = None
) -> Markup:
    """A confusion matrix coloured by row share (share of the true class predicted as each
    column), rows true class, columns predicted. Zero cells are left blank; class names label
    the axes up to 40 classes, counts are written in the cells up to 12 classes."""
    n = len(labels)
    if n == 0:
        return Markup("")
    cell = max(2.0, min(28.0, size / n))
    named = n <= 40
    margin = min(120.0, 10 + _CHAR_PX * max(len(_clip(c, 18)) for c in labels)) if named else 30.0
    grid = cell * n
    legend_y = margin + grid + 24
    legend_w = sum(20 + len(f"≥{edge:.0%}") * _CHAR_PX + 6 for edge in HEAT_BUCKETS)
    width, height = max(margin + grid + 12, margin + legend_w), legend_y + 30
    buckets: list[list[str]] = [[] for _ in HEAT_COLOURS]
    texts = []
    for i, row in enumerate(matrix):
        total = sum(row)
        for j, count in enumerate(row):
            if count <= 0:
                continue
            share = count / total
            b = max(k for k, edge in enumerate(HEAT_BUCKETS) if share >= edge)
            x, y = margin + j * cell, margin + i * cell
            buckets[b].append(f"M{_n(x)} {_n(y)}h{_n(cell)}v{_n(cell)}h-{_n(cell)}z")
            if n <= 12:
                colour = "#ffffff" if b >= 5 else "#1b2733"
                texts.append(_text(x + cell / 2, y + cell / 2 + 4, str(count), size=10, anchor="middle", fill=colour))
    geometry = {"data-margin": _n(margin), "data-cell": _n(cell), "data-n": str(n)}
    out = [_open(width, height, title, {**geometry, **(attrs or {})})]
    out.append(
        f'<rect x="{_n(margin)}" y="{_n(margin)}" width="{_n(grid)}" height="{_n(grid)}" fill="#ffffff" stroke="{GRID}"/>'
    )
    for b, parts in enumerate(buckets):
        if parts:
            out.append(f'<path fill="{HEAT_COLOURS[b]}" d="{"".join(parts)}"/>')
    out.extend(texts)
    if named:
        font = 10 if cell >= 11 else 8
        for k, label in enumerate(labels):
            c = margin + k * cell + cell / 2 + font / 3
            out.append(_text(margin - 4, c, _clip(label, 18), size=font, anchor="end"))
            out.append(
                _text(
                    c - font / 3 + 1,
                    margin - 4,
                    _clip(label, 18),
                    size=font,
                    extra=f' transform="rotate(-60 {_n(c - font / 3 + 1)} {_n(margin - 4)})"',
                )
            )
    else:
        for k in range(0, n, 10):
            c = margin + k * cell + cell / 2
            out.append(_text(margin - 4, c + 3, str(k), size=9, anchor="end"))
            out.append(_text(c, margin - 5, str(k), size=9, anchor="middle"))
    out.append(
        _text(
            margin,
            margin + grid + 14,
            "predicted class →  (rows: true class ↓; class numbers as in the table)"
            if not named
            else "predicted class →  (rows: true class ↓)",
            size=10,
        )
    )
    x = margin
    for b, colour in enumerate(HEAT_COLOURS):
        label = f"≥{HEAT_BUCKETS[b]:.0%}" if b else "<1%"
        out.append(f'<rect x="{_n(x)}" y="{_n(legend_y)}" width="12" height="12" fill="{colour}" stroke="{GRID}"/>')
        out.append(_text(x + 15, legend_y + 10, label, size=10))
        x += 20 + len(label) * _CHAR_PX + 6
    out.append("</svg>")
    return Markup("".join(out))


def reliability_diagram(curves: Sequence[ReliabilityCurve], *, title: str, size: int = 300) -> Markup:
    """Accuracy against mean confidence per bin, one line per version, on the perfect-calibration
    diagonal; dot area follows the bin's share of samples; bars at the bottom count the samples
    of the first (busiest) version per bin."""
    left, top, hist = 40.0, 10.0, 36.0
    plot = float(size)
    legend_items = [
        (f"{c.version} (n={c.n:,})".replace(",", "\u202f"), PALETTE[i % len(PALETTE)], False)
        for i, c in enumerate(curves)
    ]
    legend_items.append(("perfect calibration", AXIS, True))
    legend, legend_h = _legend(legend_items, left, 0, plot)
    width, height = left + plot + 12, top + plot + hist + 30
    out = [_open(width, height + legend_h + 6, title)]

    def x_of(v: float) -> float:
        return left + plot * v

    def y_of(v: float) -> float:
        return top + plot * (1 - v)

    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(
            f'<line x1="{_n(left)}" y1="{_n(y_of(tick))}" x2="{_n(left + plot)}" y2="{_n(y_of(tick))}" stroke="{GRID}"/>'
        )
        out.append(
            f'<line x1="{_n(x_of(tick))}" y1="{_n(top)}" x2="{_n(x_of(tick))}" y2="{_n(top + plot)}" stroke="{GRID}"/>'
        )
        out.append(_text(left - 5, y_of(tick) + 4, f"{tick:.2f}", anchor="end", size=10))
        out.append(_text(x_of(tick), top + plot + hist + 14, f"{tick:.2f}", anchor="middle", size=10))
    out.append(
        f'<line x1="{_n(x_of(0))}" y1="{_n(y_of(0))}" x2="{_n(x_of(1))}" y2="{_n(y_of(1))}" stroke="{AXIS}" stroke-dasharray="4 3"/>'
    )
    if curves:
        first = curves[0]
        most = max((b.count for b in first.bins), default=0) or 1
        for b in first.bins:
            if b.count and b.upper > b.lower:
                h = hist * 0.9 * b.count / most
                out.append(
                    f'<rect x="{_n(x_of(b.lower) + 0.5)}" y="{_n(top + plot + hist - h)}" width="{_n(plot * (b.upper - b.lower) - 1)}" height="{_n(h)}" fill="#c9d3de"/>'
                )
    for i, curve in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        total = sum(b.count for b in curve.bins) or 1
        pts = [
            (x_of(b.confidence), y_of(b.accuracy))
            for b in curve.bins
            if b.count and _finite(b.confidence) and _finite(b.accuracy)
        ]
        if len(pts) > 1:
            out.append(
                f'<polyline points="{" ".join(f"{_n(x)},{_n(y)}" for x, y in pts)}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
            )
        for b in curve.bins:
            if b.count and _finite(b.confidence) and _finite(b.accuracy):
                r = 2.0 + 6.0 * math.sqrt(b.count / total)
                out.append(
                    f'<circle cx="{_n(x_of(b.confidence))}" cy="{_n(y_of(b.accuracy))}" r="{_n(r)}" fill="{colour}" fill-opacity="0.75"/>'
                )
    out.append(_text(left + plot / 2, height - 2, "confidence", anchor="middle", size=10))
    out.append(
        _text(
            12,
            top + plot / 2,
            "accuracy",
            anchor="middle",
            size=10,
            extra=f' transform="rotate(-90 12 {_n(top + plot / 2)})"',
        )
    )
    out.append(f'<g transform="translate(0 {_n(height + 14)})">{legend}</g>')
    out.append("</svg>")
    return Markup("".join(out))


def sparkline(
    values: Sequence[float | None],
    *,
    title: str,
    width: int = 90,
    height: int = 22,
    y_range: tuple[float, float] | None = None,
) -> Markup:
    """A small line for table cells; the last value is marked. Empty with fewer than two defined
    values: one dot is not a trend."""
    finite = [v for v in values if _finite(v)]
    if len(finite) < 2:
        return Markup("")
    lo, hi = y_range if y_range is not None else (min(finite), max(finite))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    step = (width - 4) / max(len(values) - 1, 1)
    pts = [
        (2 + i * step, 2 + (height - 4) * (1 - (v - lo) / (hi - lo))) if _finite(v) else None
        for i, v in enumerate(values)
    ]
    out = [
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    out.append(_polyline(pts, PALETTE[0]).replace('r="2.6"', 'r="1.4"'))
    last = next((p for p in reversed(pts) if p is not None), None)
    if last is not None:
        out.append(f'<circle cx="{_n(last[0])}" cy="{_n(last[1])}" r="2.2" fill="{ALERT}"/>')
    out.append("</svg>")
    return Markup("".join(out))


def budget_bar(remaining: float, *, title: str, width: int = 120, height: int = 12) -> Markup:
    """The share of an error budget left: green above half, amber above zero, red when spent."""
    share = min(max(remaining, 0.0), 1.0)
    colour = "#2e8b57" if remaining > 0.5 else "#d08c00" if remaining > 0 else ALERT
    return Markup(
        f'<svg class="bar" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#eceff3"/>'
        f'<rect x="0" y="0" width="{_n(width * share)}" height="{height}" fill="{colour}"/></svg>'
    )
