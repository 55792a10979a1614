"""Drift over a Connection: which completed windows are due, scoring one, and storing the rows.

The drift job (:mod:`monitor.server.jobs.drift`) owns the transactions; docs/drift.md has the why.
A window is planned from the evaluation's hour states, which count the predictions of every
version and cohort slice without reading a prediction; it is due when ``drift_windows`` has no
row for it, or its predictions (late arrivals) or the digest of its versions' references changed
since it was scored. A due window is read once, hour by hour, into a bounded uniform sample per
slice that serves every detector and the label-free estimate.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.services.drift_features import JOB_METRICS, DriftConfig, SliceSampler, estimate, extract, score
from monitor.server.services.drift_floors import floors_for
from monitor.server.services.drift_refs import Reference, fitted
from monitor.server.services.states import Point, SliceKey
from monitor.server.services.windows import HOUR, aligned_start
from monitor.server.store import tables as t
from monitor.server.store.bulk import bulk_insert
from monitor.server.store.drift_reads import read_range
from monitor.server.store.latest import replace_latest
from monitor.wire import ModelSpec

log = logging.getLogger("cvmon.jobs.drift")


@dataclass(frozen=True)
class WindowPlan:
    """A completed aligned window, as the hour states describe it."""

    name: str
    start: datetime
    end: datetime
    #: hours of the window that have predictions
    hours: tuple[datetime, ...]
    #: predictions (status ok) of every version
    predictions: int
    #: slices to score (version with a reference, at least ``drift_min_samples`` predictions)
    slices: dict[SliceKey, int]
    #: digest of the references of the window's versions
    references: str


def hour_counts(conn: Connection, model: str, start: datetime, end: datetime) -> list[tuple[datetime, SliceKey, int]]:
    """Predictions with status ok per hour and slice, from the evaluation's hour states (part 0:
    the other parts hold late labels only)."""
    es = t.eval_states.c
    rows = conn.execute(
        sa.select(es.hour_start, es.version, es.cohort_key, es.cohort_value, es.predictions, es.errors)
        .where(es.model == model, es.hour_start >= start, es.hour_start < end, es.part == 0)
    ).all()  # fmt: skip
    return [(r.hour_start, SliceKey(r.version, r.cohort_key, r.cohort_value), r.predictions - r.errors) for r in rows]


def scored_windows(conn: Connection, model: str, start: datetime) -> dict[tuple[str, datetime], tuple[int, str]]:
    dw = t.drift_windows.c
    rows = conn.execute(
        sa.select(dw.window, dw.window_start, dw.predictions, dw.references).where(
            dw.model == model, dw.window_start >= start
        )
    )
    return {(r.window, r.window_start): (r.predictions, r.references) for r in rows}


def plan_windows(
    counts: Sequence[tuple[datetime, SliceKey, int]],
    refs: dict[str, Reference],
    config: DriftConfig,
    *,
    horizon: datetime,
    current: datetime,
) -> list[WindowPlan]:
    """The completed windows that started at or after ``horizon``, newest first (shorter first
    among windows ending together)."""
    grouped: dict[tuple[str, int, datetime], dict[SliceKey, int]] = defaultdict(lambda: defaultdict(int))
    hours: dict[tuple[str, int, datetime], set[datetime]] = defaultdict(set)
    for name, seconds in config.windows:
        for hour, key, n in counts:
            start = aligned_start(hour, seconds)
            if start >= horizon and start + timedelta(seconds=seconds) <= current:
                grouped[(name, seconds, start)][key] += n
                hours[(name, seconds, start)].add(hour)
    plans = []
    for (name, seconds, start), slices in grouped.items():
        versions = sorted({key.version for key in slices})
        digest = "|".join(refs[v].digest for v in versions if v in refs)
        plans.append(
            WindowPlan(
                name=name, start=start, end=start + timedelta(seconds=seconds), hours=tuple(sorted(hours[(name, seconds, start)])),
                predictions=sum(n for key, n in slices.items() if not key.cohort_key),
                slices=_scorable(slices, refs, config), references=hashlib.sha256(digest.encode()).hexdigest()[:32],
            )
        )  # fmt: skip
    return sorted(plans, key=lambda p: (p.end, p.start), reverse=True)


def _scorable(slices: dict[SliceKey, int], refs: dict[str, Reference], config: DriftConfig) -> dict[SliceKey, int]:
    """Slices of versions with a reference and enough predictions; per version and cohort key, the
    ``max_cohort_values`` largest values (each hour state is capped, their union may not be)."""
    ranked: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for key, n in slices.items():
        if key.cohort_key:
            ranked[(key.version, key.cohort_key)].append((-n, key.cohort_value))
    kept = {
        (v, k, value) for (v, k), values in ranked.items() for _, value in sorted(values)[: config.max_cohort_values]
    }
    return {
        key: n
        for key, n in slices.items()
        if key.version in refs and n >= config.min_samples and (not key.cohort_key or tuple(key) in kept)
    }


def score_window(
    conn: Connection, spec: ModelSpec, plan: WindowPlan, refs: dict[str, Reference], config: DriftConfig, *, now: datetime
) -> list[dict[str, Any]]:
    """The drift and estimate rows of one window: read once, sampled per slice, scored."""
    versions = {key.version for key in plan.slices}
    wanted = {d.feature for v in versions for d in refs[v].detectors}
    if spec.task == "classification" and any(refs[v].estimator_fitted_at is not None for v in versions):
        wanted.add("probabilities")
    wanted.add("confidence")  # detection: the box scores the precision estimate needs
    sampler = SliceSampler(plan.slices, config.cohort_keys, config.max_samples)
    rows: list[dict[str, Any]] = []
    for hour in plan.hours:
        sampler.add(read_range(conn, spec.name, spec.task, hour, hour + HOUR, embeddings="embedding" in wanted,
                               probabilities="probabilities" in wanted))  # fmt: skip
    for key in sorted(plan.slices):
        ref = refs[key.version]
        detectors, estimator = fitted(conn, spec.name, ref, spec.task)
        features = extract(sampler.records(key), spec, wanted)
        points: list[Point] = []
        if not ref.overlaps(plan.start, plan.end):
            points, problems = score(detectors, features, config.min_samples, floors_for(config.min_effect, spec.name))
            for problem in problems:
                log.warning("drift of %s %s %s %s: %s", spec.name, key, plan.name, plan.start.isoformat(), problem)
        if estimator is not None:
            points += estimate(
                estimator, features, spec, per_class=not key.cohort_key, min_samples=config.min_samples
            )
        rows += [
            {"model": spec.name, "window": plan.name, "window_start": plan.start, "window_end": plan.end,
             "version": key.version, "cohort_key": key.cohort_key, "cohort_value": key.cohort_value,
             "metric": p.metric, "class": p.cls, "value": p.value, "sample_count": p.sample_count,
             "label_coverage": None, "computed_at": now}
            for p in points
        ]  # fmt: skip
    return rows


def store_window(conn: Connection, model: str, plan: WindowPlan, rows: list[dict[str, Any]], *, now: datetime) -> None:
    mp = t.metric_points.c
    conn.execute(
        sa.delete(t.metric_points).where(
            mp.model == model, mp.window == plan.name, mp.window_start == plan.start, mp.metric.in_(JOB_METRICS)
        )
    )
    bulk_insert(conn, t.metric_points, rows)
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    values = {"model": model, "window": plan.name, "window_start": plan.start, "predictions": plan.predictions,
              "references": plan.references, "scored_at": now}  # fmt: skip
    stmt = insert(t.drift_windows).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["model", "window", "window_start"],
            set_={
                "predictions": stmt.excluded.predictions,
                "references": stmt.excluded.references,
                "scored_at": stmt.excluded.scored_at,
            },
        )
    )


def forget_before(conn: Connection, model: str, horizon: datetime) -> None:
    """Windows that started before the lookback are never planned again."""
    conn.execute(sa.delete(t.drift_windows).where(t.drift_windows.c.model == model, t.drift_windows.c.window_start < horizon))


def latest_rows(
    conn: Connection, model: str, config: DriftConfig, current: datetime, scored: set[tuple[str, datetime]]
) -> tuple[list[str], list[dict[str, Any]]]:
    """The windows whose drift rows in ``metric_latest`` must change so that it holds the latest
    completed window of each length, and those rows."""
    ml, mp = t.metric_latest.c, t.metric_points.c
    shown = set(
        conn.execute(sa.select(ml.window, ml.window_start).where(ml.model == model, ml.metric.in_(JOB_METRICS)).distinct()).all()
    )
    windows: list[str] = []
    rows: list[dict[str, Any]] = []
    for name, seconds in config.windows:
        start = aligned_start(current, seconds) - timedelta(seconds=seconds)
        have = {s for w, s in shown if w == name}
        if (name, start) not in scored and have == {start}:
            continue
        points = conn.execute(
            sa.select(t.metric_points).where(mp.model == model, mp.window == name, mp.window_start == start, mp.metric.in_(JOB_METRICS))
        ).all()
        if not points and not have:
            continue
        windows.append(name)
        rows += [dict(p._mapping) for p in points]
    return windows, rows


def store_latest(conn: Connection, model: str, windows: list[str], rows: list[dict[str, Any]]) -> None:
    """Replace the drift rows of ``windows`` in ``metric_latest``."""
    if windows:
        replace_latest(conn, model, windows, t.metric_latest.c.metric.in_(JOB_METRICS), rows)
