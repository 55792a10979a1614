"""Evaluation over a Connection: per-hour states, late labels, windows and their metric rows.

The evaluate job (:mod:`monitor.server.jobs.evaluate`) owns the transactions and calls these in
order; nothing here commits. The steps, for one model:

1. *Dirty hours* (new predictions, or a label that changed) are recomputed from their rows
   (:func:`recompute_hour`): the hour's slice states replace the stored ones.
2. *Label increments* (a prediction's first ground truth, arriving after its hour was evaluated)
   are merged into their hours (:func:`merge_increments`): only the newly labelled rows are read,
   and what they add is stored as a new *part* of the hour's states (``eval_states.part``), so a
   trickle of late labels over a week costs a trickle, not a week.
3. Every window that contains a changed hour is re-reduced from stored hour states, never from
   raw rows (:func:`plan_windows`, :func:`load_hours`, :func:`window_rows`,
   :func:`store_windows`): the aligned windows of the history (``metric_points``) and the rolling
   windows ending at the current hour (``metric_latest``, what /metrics serves).

Hour states come from a :class:`~monitor.server.services.state_cache.HourStateCache` where it
holds exactly the stored rows; the functions that write states say what to put there once the
caller's transaction has committed.

Dirty marks: an hour's mark is consumed by its value (writers only ever move a mark later), so
a label or prediction that commits while its hour is recomputed leaves the hour marked for the
next run. A recomputed hour's mark becomes :data:`WINDOWS_PENDING` ("state current, windows
not yet") and is deleted once its windows are stored: a run that dies in between leaves the
mark, and the next run refreshes those windows.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.metrics import CostPrices
from monitor.server.services.drift_features import JOB_METRICS as DRIFT_JOB_METRICS
from monitor.server.services.state_cache import HourStateCache, RowVersion
from monitor.server.services.states import (
    Point,
    SliceKey,
    SliceState,
    StateColumns,
    merge_slices,
    slice_points,
    slice_states,
)
from monitor.server.services.windows import (
    DAY,
    DAY_SECONDS,
    HOUR,
    WindowSpan,
    aligned,
    aligned_start,
    hour_of,
    hours,
    rolling,
)
from monitor.server.settings import Settings, parse_window
from monitor.server.store import tables as t
from monitor.server.store.bulk import bulk_insert, copy_rows
from monitor.server.store.latest import replace_latest
from monitor.server.store.reads import fetch_binary, read_hour, take_increments
from monitor.server.store.writes import WINDOWS_PENDING, mark_dirty, mark_windows_pending
from monitor.wire import ModelSpec

#: Late labels merged per run, so one run stays bounded after a labelling backlog lands.
MAX_INCREMENTS_PER_RUN = 200_000
#: Parts an hour's slice state may have (one from its rows, one per run that merged late labels
#: into it); one more folds them into one. Bounds what reading a window merges.
MAX_PARTS = 8


@dataclass(frozen=True)
class EvalConfig:
    cohort_keys: tuple[str, ...]
    #: cohort values per key evaluated apart; annotators whose accuracy is reported, likewise
    max_cohort_values: int
    windows: tuple[tuple[str, int], ...]  # (name, seconds)
    #: prices of cost per 1 000 inferences (``costs:`` of cvmon.yaml); None: no cost metric
    costs: CostPrices | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> EvalConfig:
        return cls(
            cohort_keys=tuple(settings.cohort_keys),
            max_cohort_values=settings.max_cohort_values,
            windows=tuple((w, parse_window(w)) for w in settings.windows),
            costs=settings.costs,
        )


#: Decoded states to put in the cache once the transaction that wrote them has committed:
#: hour -> (the row versions they were merged from, the slice states).
CacheEntries = dict[datetime, tuple[list[RowVersion], dict[SliceKey, SliceState]]]


# --------------------------------------------------------------------------------------------
# dirty marks


@dataclass(frozen=True)
class Marks:
    """A model's marked hours: to recompute, and recomputed but with windows still to refresh."""

    dirty: tuple[datetime, ...]
    windows_pending: frozenset[datetime]


def marked_hours(conn: Connection, model: str) -> Marks:
    d = t.dirty_hours.c
    marks = conn.execute(sa.select(d.hour_start, d.marked_at).where(d.model == model)).all()
    return Marks(
        dirty=tuple(sorted(hour for hour, marked in marks if marked != WINDOWS_PENDING)),
        windows_pending=frozenset(hour for hour, marked in marks if marked == WINDOWS_PENDING),
    )


def states_current(conn: Connection, model: str, hour: datetime, marked: datetime) -> None:
    """The hour's states are current as of its mark ``marked``: its windows are what is left. A
    writer that marked the hour again meanwhile set a later time, which stays."""
    d = t.dirty_hours
    conn.execute(
        sa.update(d).where(d.c.model == model, d.c.hour_start == hour, d.c.marked_at == marked).values(marked_at=WINDOWS_PENDING)
    )


def windows_pending(conn: Connection, model: str, changed: Iterable[datetime]) -> None:
    """Hours whose states changed wait for their windows (unless they are dirty anyway)."""
    mark_windows_pending(conn, model, sorted(changed))


def windows_done(conn: Connection, model: str, changed: Iterable[datetime]) -> None:
    """Drop the pending marks of hours whose windows were refreshed (a writer that marked one
    again meanwhile set its own time, so that mark stays and the hour is recomputed next run)."""
    d = t.dirty_hours
    values = [{"h": h} for h in sorted(changed)]
    if values:
        conn.execute(
            sa.delete(d).where(d.c.model == model, d.c.hour_start == sa.bindparam("h"), d.c.marked_at == WINDOWS_PENDING), values
        )


# --------------------------------------------------------------------------------------------
# hour states


@dataclass(frozen=True)
class Recomputed:
    """An hour recomputed from its rows: the mark it consumed and the states it stored."""

    marked: datetime
    states: dict[SliceKey, SliceState]

    def cache_entry(self, computed_at: datetime) -> tuple[list[RowVersion], dict[SliceKey, SliceState]]:
        return [(key, 0, computed_at) for key in self.states], self.states


def recompute_hour(conn: Connection, spec: ModelSpec, hour: datetime, config: EvalConfig, *, now: datetime) -> Recomputed | None:
    """Recompute one hour from its rows, replacing its stored states; None when it is no longer
    dirty. Run it in one snapshot (REPEATABLE READ on PostgreSQL): the increments it deletes are
    exactly those its rows include, so one committed meanwhile stays for the next run."""
    d, inc = t.dirty_hours.c, t.label_increments.c
    marked = conn.execute(sa.select(d.marked_at).where(d.model == spec.name, d.hour_start == hour)).scalar()
    if marked is None:
        return None
    rows = read_hour(conn, spec.name, spec.task, hour)
    states = slice_states(rows, spec, config.cohort_keys, config.max_cohort_values)
    conn.execute(sa.delete(t.eval_states).where(t.eval_states.c.model == spec.name, t.eval_states.c.hour_start == hour))
    _insert_states(conn, spec.name, {hour: states}, now)
    conn.execute(sa.delete(t.label_increments).where(inc.model == spec.name, inc.prediction_ts >= hour, inc.prediction_ts < hour + HOUR))
    return Recomputed(marked, states)


#: The state columns of ``eval_states``, and all its columns in the order of the part rows.
STATE_COLUMNS = tuple(StateColumns.__annotations__)
_PART_COLUMNS = ("model", "hour_start", "version", "cohort_key", "cohort_value", "part", "computed_at", *STATE_COLUMNS)


@dataclass
class Merged:
    """What :func:`merge_increments` did: the hours whose states changed, and their new states
    where the old ones were cached (or folded), to cache after commit."""

    hours: set[datetime] = field(default_factory=set)
    cache: CacheEntries = field(default_factory=dict)


def merge_increments(
    conn: Connection, spec: ModelSpec, config: EvalConfig, *, now: datetime, cache: HourStateCache | None = None
) -> Merged:
    """Merge the first labels of already-evaluated predictions into their hours' states.

    Run it in one snapshot. What the labels add is written as a new part of each hour's slice
    states: a run's cost follows the number of late labels, not the number of hours they fall in
    nor the size of those hours. A slice that would pass :data:`MAX_PARTS` parts has them folded
    back into one. An hour never evaluated is marked dirty instead (recomputed next run).
    """
    # deleted as they are read: in this snapshot, so one committed meanwhile stays for the next run
    rows = take_increments(conn, spec.name, spec.task, MAX_INCREMENTS_PER_RUN)
    out = Merged()
    if len(rows) == 0:
        return out
    by_hour: dict[datetime, list[int]] = defaultdict(list)
    for i, ts in enumerate(rows.ts):
        by_hour[hour_of(float(ts))].append(i)
    # the stored rows of those hours (no state read): each slice's last part and part count
    stored = row_versions(conn, spec.name, t.eval_states.c.hour_start.in_(sorted(by_hour)))
    for hour in [h for h in by_hour if h not in stored]:
        mark_dirty(conn, {(spec.name, hour)}, now, pg=conn.dialect.name == "postgresql")
        del by_hour[hour]
    full: set[datetime] = set()
    parts: list[tuple[datetime, SliceKey, int, SliceState]] = []  # (hour, slice, part, what the labels add)
    for hour, idx in by_hour.items():
        last_parts: dict[SliceKey, tuple[int, int]] = {}
        for key, part, _ in stored[hour]:
            top, count = last_parts.get(key, (part, 0))
            last_parts[key] = (max(top, part), count + 1)
        # no cap on cohort values here: the stored hour already decided which have slices;
        # these predictions are already counted in the hour: only what their labels bring
        delta = slice_states(rows.take(idx), spec, config.cohort_keys, max_cohort_values=len(idx), labels_only=True)
        for key, add in delta.items():
            if key not in last_parts:
                continue  # a cohort value beyond the cap in this hour: counted in the whole version only
            last_part, count = last_parts[key]
            parts.append((hour, key, last_part + 1, add))
            if count + 1 > MAX_PARTS:
                full.add(hour)

    def part_rows() -> Iterator[tuple[Any, ...]]:
        for hour, key, part, add in parts:
            blobs: Mapping[str, object] = add.blobs()
            yield (spec.name, hour, *key, part, now, *(blobs[c] for c in STATE_COLUMNS))

    copy_rows(conn, t.eval_states, _PART_COLUMNS, part_rows())
    if cache is not None:
        for hour in by_hour:
            if (old := cache.get(spec.name, hour, stored[hour])) is not None:
                out.cache[hour] = (list(stored[hour]), dict(old))
        for hour, key, part, add in parts:
            if hour in out.cache:
                versions, states = out.cache[hour]
                versions.append((key, part, now))
                states[key] = SliceState.merge(states[key], add)
    if full:
        out.cache.update(_fold_parts(conn, spec.name, sorted(full), now))
    out.hours = set(by_hour)
    return out


def _fold_parts(conn: Connection, model: str, hours: Sequence[datetime], now: datetime) -> CacheEntries:
    """Replace the parts of every slice of ``hours`` by their merge, as part 0."""
    es = t.eval_states
    with_parts = _load_parts(fetch_binary(conn, sa.select(es).where(es.c.model == model, es.c.hour_start.in_(hours))))
    conn.execute(sa.delete(es).where(es.c.model == model, es.c.hour_start.in_(hours)))
    _insert_states(conn, model, {hour: slices for hour, (_, slices) in with_parts.items()}, now)
    return {hour: ([(key, 0, now) for key in slices], slices) for hour, (_, slices) in with_parts.items()}


def row_versions(conn: Connection, model: str, which: sa.ColumnElement[bool]) -> dict[datetime, frozenset[RowVersion]]:
    """The (slice, part, computed_at) of every stored state row of the hours ``which`` selects."""
    es = t.eval_states.c
    found: dict[datetime, set[RowVersion]] = defaultdict(set)
    for r in conn.execute(
        sa.select(es.hour_start, es.version, es.cohort_key, es.cohort_value, es.part, es.computed_at).where(es.model == model, which)
    ):
        found[r.hour_start].add((SliceKey(r.version, r.cohort_key, r.cohort_value), r.part, r.computed_at))
    return {hour: frozenset(v) for hour, v in found.items()}


def _insert_states(conn: Connection, model: str, by_hour: Mapping[datetime, dict[SliceKey, SliceState]], now: datetime) -> None:
    bulk_insert(conn, t.eval_states, [
        {"model": model, "hour_start": hour, "version": k.version, "cohort_key": k.cohort_key,
         "cohort_value": k.cohort_value, "part": 0, "computed_at": now, **s.blobs()}
        for hour, states in by_hour.items() for k, s in states.items()
    ])  # fmt: skip


def _load_parts(rows: Iterable[Any]) -> CacheEntries:
    """Stored state rows by hour: the rows' versions, and each slice's parts merged."""
    parts: dict[datetime, dict[SliceKey, list[SliceState]]] = defaultdict(lambda: defaultdict(list))
    versions: dict[datetime, list[RowVersion]] = defaultdict(list)
    for r in rows:
        key = SliceKey(r.version, r.cohort_key, r.cohort_value)
        parts[r.hour_start][key].append(SliceState.from_row(r))
        versions[r.hour_start].append((key, r.part, r.computed_at))
    return {
        hour: (versions[hour], {key: SliceState.merge(*states) for key, states in slices.items()})
        for hour, slices in parts.items()
    }


def load_hours(
    conn: Connection, model: str, start: datetime, end: datetime, cache: HourStateCache | None = None
) -> dict[datetime, dict[SliceKey, SliceState]]:
    """The slice states of the hours in ``[start, end)``, each the merge of its parts: from
    ``cache`` where it holds exactly the stored rows, the rest read and decoded (and cached)."""
    es = t.eval_states
    in_range = sa.and_(es.c.hour_start >= start, es.c.hour_start < end)
    if cache is None:
        loaded = _load_parts(fetch_binary(conn, sa.select(es).where(es.c.model == model, in_range)))
        return {hour: slices for hour, (_, slices) in loaded.items()}
    found: dict[datetime, dict[SliceKey, SliceState]] = {}
    stored = row_versions(conn, model, in_range)
    for hour, versions in stored.items():
        if (cached := cache.get(model, hour, versions)) is not None:
            found[hour] = cached
    missing = sorted(set(stored) - set(found))
    if missing:
        which = in_range if len(missing) == len(stored) else es.c.hour_start.in_(missing)
        # cached under the versions read with the states: a write between the two reads leaves
        # this run with the newer states and the cache consistent
        for hour, (read, slices) in _load_parts(fetch_binary(conn, sa.select(es).where(es.c.model == model, which))).items():
            cache.put(model, hour, read, slices)
            found[hour] = slices
    return found


def load_window(conn: Connection, model: str, start: datetime, end: datetime) -> dict[SliceKey, SliceState]:
    """The merged states of every slice over ``[start, end)``."""
    return merge_slices(load_hours(conn, model, start, end).values())


# --------------------------------------------------------------------------------------------
# windows


@dataclass(frozen=True)
class WindowPlan:
    """The windows a run refreshes: aligned windows of the history, rolling latest windows."""

    aligned: tuple[WindowSpan, ...]
    latest: tuple[WindowSpan, ...]

    @property
    def spans(self) -> tuple[WindowSpan, ...]:
        return self.aligned + self.latest

    def __bool__(self) -> bool:
        return bool(self.aligned or self.latest)


def plan_windows(conn: Connection, spec: ModelSpec, changed: set[datetime], config: EvalConfig, *, now: datetime) -> WindowPlan:
    """The aligned windows that contain a changed hour, and the rolling windows that moved on to a
    new hour or contain a changed one."""
    ml = t.metric_latest.c
    ends = dict(
        conn.execute(
            sa.select(ml.window, sa.func.max(ml.window_end))
            .where(ml.model == spec.name, ml.metric.not_in(DRIFT_JOB_METRICS))
            .group_by(ml.window)
        ).all()
    )
    aligned_spans: set[WindowSpan] = set()
    latest: list[WindowSpan] = []
    for name, seconds in config.windows:
        aligned_spans.update(aligned(name, seconds, hour) for hour in changed)
        span = rolling(name, seconds, now)
        if ends.get(name) != span.end or any(span.start <= h < span.end for h in changed):
            latest.append(span)
    return WindowPlan(tuple(sorted(aligned_spans)), tuple(latest))


class WindowStates:
    """The slice states of windows, merged from loaded hour states. A whole UTC day is merged once
    and shared by every window that spans it: a 7d window merges 7 day states, not 168 hours (a
    detection state's merge costs about log2 of the states merged, per detection). Merges are
    exact, so the grouping does not change a value."""

    def __init__(self, hours: dict[datetime, dict[SliceKey, SliceState]]) -> None:
        self.hours = hours
        self.days: dict[datetime, dict[SliceKey, SliceState]] = {}

    def of(self, span: WindowSpan) -> dict[SliceKey, SliceState]:
        parts = []
        at = span.start
        while at < span.end:
            if at + DAY <= span.end and aligned_start(at, DAY_SECONDS) == at:
                if at not in self.days:
                    self.days[at] = merge_slices(self.hours[h] for h in hours(at, at + DAY) if h in self.hours)
                parts.append(self.days[at])
                at += DAY
            else:
                if at in self.hours:
                    parts.append(self.hours[at])
                at += HOUR
        return merge_slices(parts)


def window_states(conn: Connection, model: str, plan: WindowPlan, cache: HourStateCache | None = None) -> WindowStates:
    """The hour states every window of ``plan`` merges."""
    spans = plan.spans
    return WindowStates(load_hours(conn, model, min(s.start for s in spans), max(s.end for s in spans), cache))


#: The columns of :func:`window_rows`' tuples.
METRIC_ROW_COLUMNS = ("model", "window", "window_start", "window_end", "version", "cohort_key", "cohort_value",
                      "metric", "class", "value", "sample_count", "label_coverage", "computed_at")  # fmt: skip


def window_rows(
    spec: ModelSpec,
    spans: Iterable[WindowSpan],
    states: WindowStates,
    config: EvalConfig,
    *,
    confusion: bool,
    computed_at: datetime,
) -> Iterator[tuple[object, ...]]:
    """The metric rows of each window (in :data:`METRIC_ROW_COLUMNS` order), computed as they are
    consumed: a COPY stores one window's rows while the next one's are computed."""
    for span in spans:
        yield from _span_rows(spec, span, states.of(span), config, confusion=confusion, computed_at=computed_at)


def _span_rows(
    spec: ModelSpec,
    span: WindowSpan,
    slices: dict[SliceKey, SliceState],
    config: EvalConfig,
    *,
    confusion: bool,
    computed_at: datetime,
) -> list[tuple[object, ...]]:
    rows: list[tuple[object, ...]] = []
    for key, state in sorted(slices.items()):
        whole = key.cohort_key == ""
        coverage = state.labelled / state.predictions if state.predictions else None
        points: list[Point] = slice_points(
            state, spec, span.seconds, per_class=whole, confusion=confusion and whole,
            costs=config.costs, max_annotators=config.max_cohort_values,
        )  # fmt: skip
        rows += [
            (spec.name, span.name, span.start, span.end, key.version, key.cohort_key, key.cohort_value,
             p.metric, p.cls, p.value, p.sample_count, coverage, computed_at)
            for p in points
        ]  # fmt: skip
    return rows


def store_windows(
    conn: Connection,
    spec: ModelSpec,
    plan: WindowPlan,
    history: Iterable[Sequence[object]],
    latest: Sequence[Sequence[object]],
) -> None:
    """Replace the evaluation's rows of the plan's aligned windows in ``metric_points`` by
    ``history`` and of its rolling windows in ``metric_latest`` by ``latest`` (rows in
    :data:`METRIC_ROW_COLUMNS` order). The drift job's rows share these tables and are left be."""
    if plan.aligned:
        mp = t.metric_points.c
        # per window name, an IN list of starts: PostgreSQL hashes it, where a row-value IN of
        # (name, start) pairs is an OR of every pair tested on each row
        starts: dict[str, list[datetime]] = defaultdict(list)
        for s in plan.aligned:
            starts[s.name].append(s.start)
        in_windows = sa.or_(*(sa.and_(mp.window == name, mp.window_start.in_(listed)) for name, listed in starts.items()))
        conn.execute(sa.delete(t.metric_points).where(mp.model == spec.name, mp.metric.not_in(DRIFT_JOB_METRICS), in_windows))
        copy_rows(conn, t.metric_points, METRIC_ROW_COLUMNS, history)
    if plan.latest:
        rows = [dict(zip(METRIC_ROW_COLUMNS, row, strict=True)) for row in latest]
        replace_latest(conn, spec.name, [s.name for s in plan.latest], t.metric_latest.c.metric.not_in(DRIFT_JOB_METRICS), rows)


__all__ = [
    "MAX_INCREMENTS_PER_RUN",
    "MAX_PARTS",
    "METRIC_ROW_COLUMNS",
    "STATE_COLUMNS",
    "EvalConfig",
    "Marks",
    "Merged",
    "Recomputed",
    "WindowPlan",
    "WindowStates",
    "load_hours",
    "load_window",
    "marked_hours",
    "merge_increments",
    "plan_windows",
    "recompute_hour",
    "row_versions",
    "states_current",
    "store_windows",
    "window_rows",
    "window_states",
    "windows_done",
    "windows_pending",
]
