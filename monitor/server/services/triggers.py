"""When automation events happen: the rules behind the hooks in the jobs.

==========================  ==========================================================  ==========================
event                        when                                                        emitted from
==========================  ==========================================================  ==========================
slo.page / slo.ticket        the built-in notifier opens an incident (once per incident)  slo/notifier.py (notify)
rollback.requested           a page fires for a version that is the candidate of a        slo/notifier.py (notify)
                             canary compared in the last day and not passed
drift.persistent             drift flagged in ``drift_windows`` consecutive 1h windows     jobs/drift.py
                             of a version (once per streak)
retraining.requested         ... and accuracy over the streak (realised, else the          jobs/drift.py
                             label-free estimate) is ``retraining_drop`` below the day
                             before it
canary.verdict               a compared pair's verdict becomes pass or fail               services/canary.py (record)
report.ready                 the weekly report is stored                                 jobs/report.py
labelling.ready              a labelling queue is (re)built, with its name, strategy,     services/queues.py
                             size and export URL in ``data``                              (build_queue)
==========================  ==========================================================  ==========================

Every function takes the caller's connection, writes through :func:`~.automation.emit` (an
occurrence is emitted once, whatever re-runs) and never commits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.services.automation import emit
from monitor.server.services.canary import active_candidates
from monitor.server.store import tables as t

if TYPE_CHECKING:
    from monitor.server.settings import Settings

_HOUR = timedelta(hours=1)
#: A canary compared within this long counts as in progress for rollback requests.
CANARY_ACTIVE = timedelta(days=1)


def report_ready(
    conn: Connection, settings: Settings, *, model: str, week: str, period_start: datetime, size_bytes: int, now: datetime
) -> str | None:
    return emit(
        conn, settings.automation, model=model, kind="report.ready", key=week,
        data={"week": week, "period_start": period_start.isoformat(), "size_bytes": size_bytes,
              "url": f"/v1/models/{model}/reports/{week}"},
        now=now,
    )  # fmt: skip


def slo_alert(
    conn: Connection, settings: Settings, *, model: str, slo: str, version: str, severity: str, first_fired: datetime, now: datetime
) -> list[str]:
    """slo.page / slo.ticket for an incident, and rollback.requested when its version is a canary's
    candidate; returns the ids of the events emitted now."""
    key = f"{slo}\x00{version}\x00{severity}\x00{first_fired.isoformat()}"
    data = {"slo": slo, "version": version, "severity": severity, "first_fired": first_fired.isoformat()}
    out = [emit(conn, settings.automation, model=model, kind=f"slo.{severity}", key=key, data=data, now=now)]
    if severity == "page" and version:
        for baseline, candidate in active_candidates(conn, model, newer_than=now - CANARY_ACTIVE):
            if candidate == version:
                out.append(emit(
                    conn, settings.automation, model=model, kind="rollback.requested", key=f"{key}\x00{baseline}",
                    data={**data, "baseline": baseline, "candidate": candidate, "reason": f"SLO {slo} pages for the candidate"},
                    now=now,
                ))  # fmt: skip
    return [e for e in out if e is not None]


def drift_events(conn: Connection, settings: Settings, *, model: str, now: datetime) -> list[str]:
    """drift.persistent and retraining.requested for each version whose latest scored 1h windows
    are flagged ``drift_windows`` times in a row."""
    config = settings.automation
    mp = t.metric_points.c
    rows = conn.execute(
        sa.select(mp.version, mp.window_start, sa.func.max(mp.value))
        .where(mp.model == model, mp.window == "1h", mp.cohort_key == "", mp.metric == "drift_detected",
               mp.window_start >= now - timedelta(days=8))
        .group_by(mp.version, mp.window_start)
    ).all()  # fmt: skip
    flagged: dict[str, dict[datetime, bool]] = {}
    for version, start, value in rows:
        flagged.setdefault(version, {})[start] = bool(value and value >= 1)
    out: list[str] = []
    for version, windows in sorted(flagged.items()):
        streak = _streak(windows)
        if len(streak) < config.drift_windows:
            continue
        first = streak[0]
        detectors = _flagging_detectors(conn, model, version, streak[-1])
        data = {"version": version, "windows": len(streak), "streak_start": first.isoformat(),
                "latest_window": streak[-1].isoformat(), "detectors": detectors}  # fmt: skip
        key = f"{version}\x00{first.isoformat()}"
        event = emit(conn, config, model=model, kind="drift.persistent", key=key, data=data, now=now)
        if event is not None:
            out.append(event)
        drop = _quality_drop(conn, model, version, first, streak[-1] + _HOUR)
        if drop is not None and drop[0] >= config.retraining_drop:
            event = emit(conn, config, model=model, kind="retraining.requested", key=key,
                         data={**data, "accuracy_drop": drop[0], "accuracy_source": drop[1]}, now=now)  # fmt: skip
            if event is not None:
                out.append(event)
    return out


def _streak(windows: dict[datetime, bool]) -> list[datetime]:
    """The flagged hours ending at the latest scored hour, oldest first (empty if it is not flagged)."""
    out: list[datetime] = []
    hour = max(windows)
    while windows.get(hour):
        out.append(hour)
        hour -= _HOUR
    return out[::-1]


def _flagging_detectors(conn: Connection, model: str, version: str, start: datetime) -> list[str]:
    mp = t.metric_points.c
    query = sa.select(mp["class"]).where(
        mp.model == model, mp.window == "1h", mp.window_start == start, mp.version == version, mp.cohort_key == "",
        mp.metric == "drift_detected", mp.value >= 1,
    )  # fmt: skip
    return sorted(conn.execute(query).scalars())


def _quality_drop(conn: Connection, model: str, version: str, start: datetime, end: datetime) -> tuple[float, str] | None:
    """Accuracy over [start, end) below the day before start (realised, else estimated)."""
    mp = t.metric_points.c
    for metric, source in (("accuracy", "realised"), ("estimated_accuracy", "estimated")):

        def mean(lo: datetime, hi: datetime, metric: str = metric) -> float | None:
            value = conn.execute(
                sa.select(sa.func.sum(mp.value * mp.sample_count) / sa.func.nullif(sa.func.sum(mp.sample_count), 0)).where(
                    mp.model == model, mp.window == "1h", mp.version == version, mp.cohort_key == "", mp.metric == metric,
                    mp["class"] == "", mp.window_start >= lo, mp.window_start < hi, mp.value.is_not(None),
                )
            ).scalar()  # fmt: skip
            return None if value is None else float(value)

        during, before = mean(start, end), mean(start - timedelta(days=1), start)
        if during is not None and before is not None:
            return before - during, source
    return None
