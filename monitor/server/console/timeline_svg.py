"""The incident timeline as inline SVG: one lane per kind of event on one time axis, each event a
bar from its start to its end (still going: to the right edge) or a mark for an instant, with a
``<title>`` that names it (the browser's tooltip; the list under the chart says the same)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

from monitor.server.reports.charts import ALERT, AXIS, GRID, PALETTE
from monitor.server.services.timeline import KINDS, TimelineEvent

LANES = {"alert": "Alerts", "drift": "Drift flags", "version": "New versions", "silence": "Silences"}
COLOURS = {"page": ALERT, "ticket": "#d08c00", "drift": PALETTE[3], "version": PALETTE[0], "silence": "#7f7f7f"}
WIDTH, LEFT, RIGHT, LANE = 720.0, 96.0, 12.0, 26.0


def _n(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0")


def timeline_chart(events: Sequence[TimelineEvent], since: datetime, until: datetime, *, fleet: bool) -> Markup:
    span = (until - since).total_seconds() or 1.0
    plot = WIDTH - LEFT - RIGHT
    height = LANE * len(KINDS) + 34

    def x_of(ts: datetime) -> float:
        return LEFT + plot * min(max((ts - since).total_seconds() / span, 0.0), 1.0)

    out = [
        f'<svg class="chart timeline" viewBox="0 0 {_n(WIDTH)} {_n(height)}" width="{_n(WIDTH)}" height="{_n(height)}" '
        f'role="img" aria-label="Incident timeline" font-family="system-ui, sans-serif"><title>Incident timeline</title>'
    ]
    for i, kind in enumerate(KINDS):
        y = 8 + i * LANE
        out.append(f'<rect x="{_n(LEFT)}" y="{_n(y)}" width="{_n(plot)}" height="{_n(LANE - 6)}" fill="#f4f5f7"/>')
        out.append(f'<text x="{_n(LEFT - 6)}" y="{_n(y + 14)}" font-size="11" text-anchor="end" fill="{AXIS}">{LANES[kind]}</text>')
    day = since.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    days = max(1, int(span // 86400))
    every = 1 if days <= 10 else 7 if days <= 70 else 30
    k = 0
    while day < until:
        x = x_of(day)
        out.append(f'<line x1="{_n(x)}" y1="4" x2="{_n(x)}" y2="{_n(height - 24)}" stroke="{GRID}"/>')
        if k % every == 0:
            out.append(f'<text x="{_n(x + 2)}" y="{_n(height - 10)}" font-size="10" fill="{AXIS}">{day:%a %d %b}</text>')
        day += timedelta(days=1)
        k += 1
    for e in events:
        lane = KINDS.index(e.kind)
        y = 8 + lane * LANE
        colour = COLOURS.get(e.severity or e.kind, PALETTE[0])
        who = f"{e.model}: " if fleet else ""
        until_text = f" until {e.end:%Y-%m-%d %H:%M}" if e.end else (" (still on)" if e.kind in ("alert", "drift") else "")
        label = escape(f"{who}{e.title}, {e.detail}; from {e.start:%Y-%m-%d %H:%M}{until_text} UTC")
        if e.kind == "version":
            x = x_of(e.start)
            out.append(f'<path d="M{_n(x)} {_n(y + 2)}l6 8l-6 8l-6 -8z" fill="{colour}"><title>{label}</title></path>')
            continue
        x0, x1 = x_of(e.start), x_of(e.end or until)
        out.append(f'<rect x="{_n(x0)}" y="{_n(y + 3)}" width="{_n(max(x1 - x0, 2.0))}" height="{_n(LANE - 12)}" '
                   f'fill="{colour}" fill-opacity="0.8"><title>{label}</title></rect>')  # fmt: skip
    out.append("</svg>")
    return Markup("".join(out))
