"""The incident timeline of one model or the fleet: burn-rate incidents fired and resolved, drift
flags, new versions and silences, on one time axis (the seed's "incident summary: past 7/30 days").

Drift flags are the windows a detector flagged (``drift_detected`` = 1, the shortest drift
window), consecutive windows of one detector, version and slice joined into one span. Functions
over the caller's connection; none commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.services.console_slo import incidents_of
from monitor.server.store import tables as t

Kind = Literal["alert", "drift", "version", "silence"]
KINDS: tuple[Kind, ...] = ("alert", "drift", "version", "silence")


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    kind: Kind
    model: str
    start: datetime
    #: None: still going (alerts, drift) or an instant (a new version)
    end: datetime | None
    title: str
    detail: str
    #: page / ticket for alerts, else ""
    severity: str = ""


def timeline(
    conn: Connection, models: Sequence[str], *, since: datetime, until: datetime, drift_window: str | None
) -> list[TimelineEvent]:
    """Everything that happened to ``models`` between ``since`` and ``until``, newest first."""
    if not models:
        return []
    names = list(models)
    events: list[TimelineEvent] = []
    for i in incidents_of(conn, names, since=since):
        if i.first_fired >= until:
            continue
        scope = f" ({i.version})" if i.version else ""
        state = "firing" if i.state == "firing" else f"resolved {i.resolved_at:%Y-%m-%d %H:%M} UTC"
        events.append(TimelineEvent("alert", i.model, i.first_fired, i.resolved_at, f"{i.severity}: {i.slo}{scope}", state, i.severity))
    if drift_window is not None:
        events += _drift_spans(conn, names, since, until, drift_window)
    v = t.model_versions.c
    for r in conn.execute(
        sa.select(v.model, v.version, v.first_seen).where(v.model.in_(names), v.first_seen >= since, v.first_seen < until)
    ):
        events.append(TimelineEvent("version", r.model, r.first_seen, None, f"new version {r.version}", "first prediction"))
    s = t.silences.c
    for r in conn.execute(
        sa.select(t.silences).where(s.model.in_(names), s.starts_at < until, s.ends_at > since)
    ):
        what = f"SLO {r.slo}" if r.slo else "every SLO"
        by = f" by {r.created_by}" if r.created_by else ""
        detail = f"{what}{by}" + (f": {r.comment}" if r.comment else "")
        events.append(TimelineEvent("silence", r.model, r.starts_at, r.ends_at, f"silence {r.silence_id}", detail))
    events.sort(key=lambda e: (e.start, e.kind, e.title), reverse=True)
    return events


def _drift_spans(conn: Connection, models: list[str], since: datetime, until: datetime, window: str) -> list[TimelineEvent]:
    mp = t.metric_points.c
    rows = conn.execute(
        sa.select(mp.model, mp.version, mp.cohort_key, mp.cohort_value, mp["class"], mp.window_start, mp.window_end)
        .where(mp.model.in_(models), mp.window == window, mp.window_start >= since, mp.window_start < until,
               mp.metric == "drift_detected", mp.value == 1.0)
        .order_by(mp.model, mp.version, mp.cohort_key, mp.cohort_value, mp["class"], mp.window_start)
    ).all()
    spans: dict[tuple[str, str, str, str], list[list[datetime]]] = defaultdict(list)
    for r in rows:
        cohort = f"{r.cohort_key}={r.cohort_value}" if r.cohort_key else "all traffic"
        key = (r.model, r.version, cohort, r._mapping["class"])
        runs = spans[key]
        if runs and runs[-1][1] >= r.window_start:
            runs[-1][1] = max(runs[-1][1], r.window_end)
        else:
            runs.append([r.window_start, r.window_end])
    out = []
    for (model, version, cohort, detector), runs in spans.items():
        for start, end in runs:
            out.append(TimelineEvent("drift", model, start, end, f"drift: {detector}", f"{cohort}, {version}"))
    return out
