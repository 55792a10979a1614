"""Reading the per-minute SLO counts, and keeping the table small.

:func:`read_counts` is the one query the exporter (every scrape) and the built-in notifier (every
tick) run: per SLO and model version, the total ever counted (the monotonic counters) and the
sums over the last *w* seconds for every window the SLO needs (its alert windows and its own
window), all in one grouped scan with a conditional sum per window.

A window of *w* seconds ending at ``now`` holds the minutes after ``now - w``: the current minute
and the ``w / 60 - 1`` before it, the same span Prometheus' ``increase(...[w])`` looks at.

:func:`compact` folds old rows without changing any sum: minutes older than the SLO's longest
alert window (plus an hour) become one row per hour, and rows older than the SLO window (plus a
day) become one row at 1970-01-01, the running total. Alert windows are therefore always exact to
the minute, the error budget over the SLO window is exact to the hour at its far edge, and a
busy SLO holds about ``window / 1h + longest alert window / 1m`` rows per version.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.slo.burnrate import WindowCounts, required_windows
from monitor.server.slo.events import minute_floor
from monitor.server.slo.spec import SLO
from monitor.server.store import tables as t

#: The ``minute`` of the row holding everything folded out of the SLO window.
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MINUTE: Final = timedelta(minutes=1)
HOUR: Final = timedelta(hours=1)
_NO_EVENTS: Final = WindowCounts(0, 0)


def windows_of(slo: SLO) -> tuple[int, ...]:
    """Every window (seconds, ascending) the exporter and notifier sum for ``slo``."""
    return tuple(sorted({*required_windows(slo.alerts), slo.window_s}))


def window_start(now: datetime, seconds: int) -> datetime:
    """The first minute a window of ``seconds`` ending at ``now`` holds."""
    return minute_floor(now) - timedelta(seconds=seconds) + MINUTE


@dataclass(frozen=True, slots=True)
class VersionCounts:
    """The counts of one SLO and model version."""

    #: Everything ever counted: the value of the exported counters.
    total: WindowCounts
    #: Window in seconds -> counts over the last that many seconds.
    windows: Mapping[int, WindowCounts]


@dataclass(frozen=True, slots=True)
class SloCounts:
    """The counts of one SLO, per model version (versions without rows are absent)."""

    slo: SLO
    versions: Mapping[str, VersionCounts]

    def window(self, seconds: int, version: str | None = None) -> WindowCounts:
        """Events over the last ``seconds``: of one version, or summed over versions (None)."""
        parts = self.versions.values() if version is None else [self.versions.get(version)]
        events = bad = 0.0
        for part in parts:
            if part is not None:
                counts = part.windows.get(seconds, _NO_EVENTS)
                events += counts.events
                bad += counts.bad
        return WindowCounts(events, bad)

    def alert_counts(self, version: str | None = None) -> dict[int, WindowCounts]:
        """The ``counts`` argument of :func:`~monitor.server.slo.burnrate.evaluate_alerts`."""
        return {w: self.window(w, version) for w in required_windows(self.slo.alerts)}


def read_counts(conn: Connection, slos: Sequence[SLO], now: datetime) -> dict[str, SloCounts]:
    """SLO name -> its counts, for every SLO in ``slos`` (one grouped query)."""
    if not slos:
        return {}
    e = t.slo_events.c
    windows = sorted({w for slo in slos for w in windows_of(slo)})
    columns: list[Any] = [e.model, e.slo, e.version, sa.func.sum(e.events), sa.func.sum(e.bad)]
    for w in windows:
        recent = e.minute >= window_start(now, w)
        columns += [
            sa.func.sum(sa.case((recent, e.events), else_=0)),
            sa.func.sum(sa.case((recent, e.bad), else_=0)),
        ]
    by_name = {slo.name: slo for slo in slos}
    query = (
        sa.select(*columns)
        .where(e.model.in_(sorted({slo.model for slo in slos})), e.slo.in_(sorted(by_name)))
        .group_by(e.model, e.slo, e.version)
    )
    versions: dict[str, dict[str, VersionCounts]] = {name: {} for name in by_name}
    for row in conn.execute(query):
        model, name, version = row[0], row[1], row[2]
        slo = by_name[name]
        if model != slo.model:
            continue  # rows left from when this SLO name belonged to another model
        values = [int(v or 0) for v in row[3:]]
        sums = {
            w: WindowCounts(values[2 + 2 * i], values[3 + 2 * i]) for i, w in enumerate(windows) if w in windows_of(slo)
        }
        versions[name][version] = VersionCounts(WindowCounts(values[0], values[1]), sums)
    return {name: SloCounts(by_name[name], v) for name, v in versions.items()}


# --------------------------------------------------------------------------------------------
# compaction


def _hour_floor(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


def compact(conn: Connection, slo: SLO, now: datetime, *, pg: bool) -> int:
    """Fold old rows of ``slo`` (see the module docstring); returns how many rows went away.

    Runs in the caller's transaction. Ingest only ever adds to the current minute, far younger
    than anything folded here, so the two never touch the same rows.
    """
    longest_alert = max((a.long_window_s for a in slo.alerts), default=slo.window_s)
    hour_cutoff = _hour_floor(now - timedelta(seconds=longest_alert) - HOUR)
    total_cutoff = _hour_floor(now - timedelta(seconds=slo.window_s) - timedelta(days=1))
    removed = _fold(conn, slo, EPOCH + MINUTE, total_cutoff, lambda _: EPOCH, pg=pg)
    # Only the last day before the cutoff: older minutes were folded by earlier runs (or will be
    # folded into the total), so a run reads a day of hourly rows, not the whole SLO window.
    lo = max(total_cutoff, hour_cutoff - timedelta(days=1))
    if lo < hour_cutoff:
        removed += _fold(conn, slo, lo, hour_cutoff, _hour_floor, pg=pg)
    return removed


def _fold(conn: Connection, slo: SLO, lo: datetime, hi: datetime, target: Any, *, pg: bool) -> int:
    """Replace the rows of ``[lo, hi)`` by one row per (version, ``target(minute)``), adding to an
    existing target row outside the range."""
    e = t.slo_events
    in_range = sa.and_(e.c.model == slo.model, e.c.slo == slo.name, e.c.minute >= lo, e.c.minute < hi)
    rows = conn.execute(sa.select(e.c.version, e.c.minute, e.c.events, e.c.bad).where(in_range)).all()
    # (version, target minute) -> [events, bad, rows, rows already at the target]
    groups: dict[tuple[str, datetime], list[int]] = {}
    for version, minute, events, bad in rows:
        to = target(minute)
        g = groups.setdefault((version, to), [0, 0, 0, 0])
        g[0] += events
        g[1] += bad
        g[2] += 1
        g[3] += minute == to
    if all(g[2] == 1 and g[3] == 1 for g in groups.values()):
        return 0  # every group is one row at its target already: nothing to fold
    conn.execute(sa.delete(e).where(in_range))
    stmt = (pg_insert if pg else sqlite_insert)(e)
    stmt = stmt.on_conflict_do_update(
        index_elements=[e.c.model, e.c.slo, e.c.version, e.c.minute],
        set_={"events": e.c.events + stmt.excluded.events, "bad": e.c.bad + stmt.excluded.bad},
    )
    conn.execute(
        stmt,
        [
            {"model": slo.model, "slo": slo.name, "version": v, "minute": m, "events": g[0], "bad": g[1]}
            for (v, m), g in sorted(groups.items())
        ],
    )
    return len(rows) - len(groups)
