"""Time-slice SLIs (ece, drift, map, cost, label_quality): one event per SLO, model version and
evaluation hour.

The evaluate job writes the metrics of every aligned 1h window to ``metric_points``. Once an hour
has ended (and is not waiting to be recomputed), and its slice holds at least the SLO's
``min_samples`` samples, it becomes one event of each time-slice SLO of the model: bad when its
ECE is above the threshold, its mAP@[.5:.95] below it, its drift score above it, its cost per
1 000 inferences above it, or its label agreement (or Krippendorff's α) below it. The samples are
labelled predictions (ece), images (map), current samples (drift), priced predictions (cost) and
multiply-annotated predictions (label_quality): the ``sample_count`` of the stored point.

Each (SLO, version, hour) is counted once: ``slo_slices`` remembers it, and the event goes into
``slo_events`` at the minute it is counted, in the same transaction. It is never changed
afterwards, even when late labels move the hour's value, so the counters stay monotonic. An hour
becomes countable later when late labels bring it to ``min_samples``, but only within
:data:`LOOKBACK` of its end: a new SLO does not count a month of past hours in one minute, which
would look like a burst to every short alert window.

Which slice: the whole version, or, for an SLO with a one-key cohort, that cohort value's slice
(the key must be one of the settings' ``cohort_keys``; SLOs with several cohort keys have no
evaluation slice and count nothing, which settings validation refuses).

Drift: the drift job (:mod:`monitor.server.jobs.drift`) stores its scores as ``metric_points``
rows with ``metric = 'drift_score'`` over 1h windows and ``'<detector>:<feature>'`` in the
``class`` column. The hour's score is the largest over the features of the SLO's ``detector`` (a drift SLO
must name one); its sample count is the smallest. Without such rows a
drift SLO counts nothing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.slo.events import Tally, add_events, minute_floor
from monitor.server.slo.spec import LABEL_QUALITY_METRICS, SLO
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.tables import FEATURE_SEPARATOR

log = logging.getLogger("cvmon.slo")

#: The evaluation window a time slice is.
SLICE_WINDOW: Final = "1h"
SLICE: Final = timedelta(hours=1)
#: Hours that ended longer ago than this are never counted (see the module docstring).
LOOKBACK: Final = timedelta(days=1)
#: The stored metric each time-slice SLI reads (label_quality: the SLO's ``metric``).
SLICE_METRICS: Final = {"ece": "ece", "map": "map", "drift": "drift_score", "cost": "cost_per_1k"}


def slice_metric(slo: SLO) -> str:
    """The stored metric whose 1h points are the SLO's time slices."""
    if slo.sli == "label_quality":
        return slo.metric or LABEL_QUALITY_METRICS[0]
    return SLICE_METRICS[slo.sli]


@dataclass(frozen=True, slots=True)
class Slice:
    """One evaluation hour of one SLO and version, ready to count."""

    slo: SLO
    version: str
    window_start: datetime
    value: float
    sample_count: int

    @property
    def bad(self) -> bool:
        """Whether the hour breaks the SLO's bound (mAP and label quality are lower bounds, the
        others upper)."""
        assert self.slo.threshold is not None
        if self.slo.lower_bound:
            return self.value < self.slo.threshold
        return self.value > self.slo.threshold


def slice_of(slo: SLO, rows: list[Any]) -> tuple[float, int] | None:
    """The value and sample count of ``slo`` in one hour's ``metric_points`` rows of one version
    and slice, or None when the hour has no value for it."""
    metric = slice_metric(slo)
    if slo.sli != "drift":
        for row in rows:
            if row.metric == metric and row.cls == "":
                return float(row.value), int(row.sample_count)
        return None
    scores = [
        r
        for r in rows
        if r.metric == metric and r.cls.split(FEATURE_SEPARATOR, 1)[0] == slo.detector
    ]
    if not scores:
        return None
    return max(float(r.value) for r in scores), min(int(r.sample_count) for r in scores)


def _slice_filter(slo: SLO) -> tuple[str, str] | None:
    """(cohort_key, cohort_value) of the evaluation slice an SLO reads; None: it has none."""
    if not slo.cohort:
        return ("", "")
    if len(slo.cohort) == 1:
        return slo.cohort[0]
    return None


def due_slices(engine: Engine, model: str, slos: list[SLO], now: datetime) -> list[Slice]:
    """The hours of ``model`` that are complete, evaluated, big enough and not yet counted."""
    slos = [s for s in slos if s.model == model and s.time_slice and _slice_filter(s) is not None]
    if not slos:
        return []
    mp = t.metric_points.c
    earliest = now - LOOKBACK - SLICE
    with engine.connect() as conn:
        points = conn.execute(
            sa.select(mp.version, mp.window_start, mp.cohort_key, mp.cohort_value, mp.metric, mp["class"].label("cls"),
                      mp.value, mp.sample_count)
            .where(mp.model == model, mp.window == SLICE_WINDOW, mp.window_start >= earliest, mp.window_end <= now,
                   mp.metric.in_(sorted({slice_metric(s) for s in slos})), mp.value.is_not(None))
        ).all()  # fmt: skip
        # an hour waiting to be recomputed has stale metrics: count it once it is fresh
        dirty = set(conn.execute(sa.select(t.dirty_hours.c.hour_start).where(t.dirty_hours.c.model == model)).scalars())
        ss = t.slo_slices.c
        counted = set(
            conn.execute(
                sa.select(ss.slo, ss.version, ss.window_start).where(ss.model == model, ss.window_start >= earliest)
            ).all()
        )
    hours: dict[tuple[str, datetime, str, str], list[Any]] = {}
    for row in points:
        hours.setdefault((row.version, row.window_start, row.cohort_key, row.cohort_value), []).append(row)
    due = []
    for (version, start, cohort_key, cohort_value), rows in sorted(hours.items()):
        if start in dirty:
            continue
        for slo in slos:
            if _slice_filter(slo) != (cohort_key, cohort_value) or (slo.name, version, start) in counted:
                continue
            found = slice_of(slo, rows)
            if found is not None and found[1] >= slo.min_samples:
                due.append(Slice(slo, version, start, found[0], found[1]))
    return due


def count_time_slices(engine: Engine, model: str, slos: list[SLO], now: datetime) -> int:
    """Count the due hours of ``model``'s time-slice SLOs (idempotent); returns how many."""
    due = due_slices(engine, model, slos, now)
    if not due:
        return 0
    pg = engine.dialect.name == "postgresql"
    ss = t.slo_slices
    # RETURNING says whether this transaction inserted the row (rowcount is not reliable here)
    stmt = (pg_insert if pg else sqlite_insert)(ss).on_conflict_do_nothing().returning(ss.c.slo)
    tally: Tally = {}
    with write_transaction(engine) as conn:
        for s in due:
            inserted = conn.execute(
                stmt,
                {"model": model, "slo": s.slo.name, "version": s.version, "window_start": s.window_start,
                 "value": s.value, "sample_count": s.sample_count, "bad": int(s.bad), "counted_at": now},
            ).first()  # fmt: skip
            if inserted is None:
                continue  # counted meanwhile (another process): never twice
            counts = tally.setdefault((model, s.slo.name, s.version), [0, 0])
            counts[0] += 1
            counts[1] += s.bad
            if s.bad:
                log.info(
                    "SLO %s: hour %s of %s %s is bad (%s %.4g, threshold %g, %d samples)",
                    s.slo.name, s.window_start.isoformat(), model, s.version, s.slo.sli, s.value,
                    s.slo.threshold, s.sample_count,
                )  # fmt: skip
        add_events(conn, tally, minute_floor(now), pg=pg)
    return sum(n for n, _ in tally.values())
