"""Charts of the console: the weekly report's SVG (:mod:`monitor.server.reports.charts`) with what
the hover script needs, and the same data as JSON for that script.

A line chart's ``<svg>`` carries its time span, its plot area and the URL of its data
(``data-src``); ``static/console.js`` fetches that JSON on the first hover or focus and shows the
value and the sample count of the nearest window. Without the script the chart is still all there.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape

from monitor.server.reports import charts as svg
from monitor.server.reports.charts import Threshold, Unit
from monitor.server.reports.data import Series
from monitor.server.services.console_data import MetricRow

#: (window start, value or None, samples behind it)
Point = tuple[datetime, float | None, int]
WIDTH = 640


@dataclass(frozen=True, slots=True)
class Line:
    label: str
    points: tuple[Point, ...]

    @property
    def last(self) -> Point | None:
        return next((p for p in reversed(self.points) if p[1] is not None), None)


@dataclass(frozen=True, slots=True)
class Chart:
    """One chart: what it draws and what its hover data says."""

    key: str
    title: str
    unit: Unit
    start: datetime
    end: datetime
    window: timedelta
    lines: tuple[Line, ...]
    thresholds: tuple[Threshold, ...] = ()
    flagged: tuple[tuple[datetime, datetime], ...] = ()
    #: what an empty chart says instead (e.g. "no labels yet")
    note: str = ""
    #: what the reader of a drawn chart should know, shown under it
    remark: str = ""

    @property
    def empty(self) -> bool:
        return not any(p[1] is not None for line in self.lines for p in line.points)


def combine(rows: Iterable[MetricRow]) -> Point | None:
    """Rows of one window merged exactly where the metric is a ratio of counts (``value`` weighs
    ``n`` samples: accuracy, recall, precision, coverage, error rate)."""
    rows = list(rows)
    if not rows:
        return None
    defined = [r for r in rows if r.value is not None and r.n > 0]
    n = sum(r.n for r in rows)
    if not defined:
        return (rows[0].window_start, None, n)
    weight = sum(r.n for r in defined)
    return (rows[0].window_start, sum((r.value or 0.0) * r.n for r in defined) / weight, n)


def lines_by(
    rows: Iterable[MetricRow], label: Callable[[MetricRow], str], *, starts: Sequence[datetime] | None = None
) -> tuple[Line, ...]:
    """One line per label, points in time order; with ``starts``, every line has a point per start
    (None where it has no value), so a gap shows as a gap."""
    grouped: dict[str, dict[datetime, Point]] = defaultdict(dict)
    for r in rows:
        grouped[label(r)][r.window_start] = (r.window_start, r.value, r.n)
    out = []
    for name in sorted(grouped):
        by_start = grouped[name]
        keys = starts if starts is not None else sorted(by_start)
        out.append(Line(name, tuple(by_start.get(s, (s, None, 0)) for s in keys)))
    return tuple(out)


def merged_line(label: str, rows: Iterable[MetricRow], starts: Sequence[datetime]) -> Line:
    """One line of rows of several versions or slices merged per window (see :func:`combine`)."""
    by_start: dict[datetime, list[MetricRow]] = defaultdict(list)
    for r in rows:
        by_start[r.window_start].append(r)
    return Line(label, tuple(combine(by_start[s]) or (s, None, 0) for s in starts))


def window_starts(start: datetime, end: datetime, window: timedelta) -> list[datetime]:
    """Aligned window starts in ``[start, end)`` (start is aligned by the caller)."""
    out, at = [], start
    while at < end:
        out.append(at)
        at += window
    return out


def render(chart: Chart, src: str) -> Markup:
    """The chart as inline SVG, or a sentence when it has nothing to draw."""
    if chart.empty:
        return Markup(f'<p class="empty">{escape(chart.note or "No data in this range yet.")}</p>')
    attrs = {
        "data-src": src, "data-t0": str(int(chart.start.timestamp() * 1000)), "data-t1": str(int(chart.end.timestamp() * 1000)),
        "data-x0": str(svg.LINE_LEFT), "data-x1": str(WIDTH - svg.LINE_RIGHT), "data-unit": chart.unit,
        "data-window": str(int(chart.window.total_seconds())), "tabindex": "0",
    }  # fmt: skip
    return svg.line_chart(
        [Series(line.label, tuple((p[0], p[1]) for p in line.points)) for line in chart.lines],
        start=chart.start, end=chart.end, title=chart.title, unit=chart.unit, thresholds=chart.thresholds,
        flagged=chart.flagged, x_offset=chart.window / 2, width=WIDTH, attrs=attrs,
    )  # fmt: skip


def render_static(chart: Chart) -> Markup:
    """A chart without hover data (a computed curve, e.g. a budget burn-down)."""
    if chart.empty:
        return Markup(f'<p class="empty">{escape(chart.note or "No data yet.")}</p>')
    return svg.line_chart(
        [Series(line.label, tuple((p[0], p[1]) for p in line.points)) for line in chart.lines],
        start=chart.start, end=chart.end, title=chart.title, unit=chart.unit, thresholds=chart.thresholds,
        width=WIDTH, attrs={"tabindex": "0"},
    )  # fmt: skip


def as_json(chart: Chart) -> dict[str, Any]:
    """What the hover script reads: every line's windows (epoch ms), values and sample counts."""
    return {
        "key": chart.key, "title": chart.title, "unit": chart.unit,
        "window_seconds": int(chart.window.total_seconds()),
        "lines": [
            {"label": line.label, "points": [[int(p[0].timestamp() * 1000), p[1], p[2]] for p in line.points]}
            for line in chart.lines
        ],
    }  # fmt: skip


def spark(values: Sequence[float | None], title: str, *, share: bool = True) -> Markup:
    return svg.sparkline(list(values), title=title, y_range=(0.0, 1.0) if share else None)


def budget(remaining: float, title: str) -> Markup:
    return svg.budget_bar(remaining, title=title)
