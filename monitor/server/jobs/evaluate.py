"""The evaluate job: per-hour states, late labels, windows, metric history.

Each run, for one model:

1. *Dirty hours* (new predictions, or a label that changed) are recomputed from their rows: the
   per-slice states of the hour replace the stored ones.
2. *Label increments* (a prediction's first ground truth, arriving after its hour was evaluated)
   are merged into the stored states of their hour: only the newly labelled rows are read, and
   what they add is stored as a new part of the hour's states (``eval_states.part``), so a
   trickle of late labels over a week costs a trickle, not a week.
3. Every window that contains a changed hour is re-reduced from stored hour states (never from
   raw rows): the aligned windows of the history (``metric_points``) and the rolling windows
   ending at the current hour (``metric_latest``, what /metrics serves). Hour states come from
   the process's cache of decoded states where it holds exactly the stored rows
   (:mod:`monitor.server.jobs.state_cache`); steps 1 and 2 put what they write there.

On PostgreSQL (Linux, ``eval_fork``) a child process forked for the purpose packs and sends the
late labels' parts while this one merges them into the cached hours, and computes windows shorter
than a day beside the longer ones (:class:`monitor.server.store.bulk.ForkedCopy`): the job uses a
second core where the machine has one.

Steps 1 and 2 run hour by hour, each in its own transaction that reads the hour (in one
snapshot on PostgreSQL: REPEATABLE READ), writes its states and deletes the increments it saw.
The dirty mark it saw is consumed right after, by its value (writers only ever move a mark
later), so a label or prediction that commits meanwhile leaves the hour marked for the next run,
never lost — and ingest, which marks the current hour with every batch, never makes the snapshot
transaction fail (it did, for good under steady traffic, when the mark was consumed inside it).
The mark is not deleted but set to :data:`WINDOWS_PENDING` ("state current, windows not yet"),
and deleted after step 3: a run that dies or fails between an hour and its windows (kill -9, an
error) leaves the mark, and the next run refreshes those windows.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from monitor.server.exporters.latest import replace_latest
from monitor.server.jobs.drift_features import JOB_METRICS as DRIFT_JOB_METRICS
from monitor.server.jobs.state_cache import HourStateCache, RowVersion, state_cache
from monitor.server.jobs.states import (
    Point,
    SliceKey,
    SliceState,
    StateColumns,
    merge_slices,
    slice_points,
    slice_states,
)
from monitor.server.settings import Settings, parse_window
from monitor.server.store import tables as t
from monitor.server.store.bulk import FORK_AVAILABLE, ForkedCopy, bulk_insert, copy_rows
from monitor.server.store.engine import write_transaction
from monitor.server.store.reads import fetch_binary, read_hour, take_increments
from monitor.server.store.registry import model_specs
from monitor.server.store.writes import WINDOWS_PENDING
from monitor.wire import ModelSpec

log = logging.getLogger("cvmon.jobs.evaluate")

T = TypeVar("T")

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DAY_SECONDS = 86_400
#: Windows are aligned to multiples of their length counted from a Monday (1970-01-05), so 1d
#: windows start at midnight UTC and 7d windows on Mondays.
_ALIGN_ORIGIN = datetime(1970, 1, 5, tzinfo=UTC)
#: Late labels merged per run, so one run stays bounded after a labelling backlog lands.
MAX_INCREMENTS_PER_RUN = 200_000
#: Parts an hour's slice state may have (one from its rows, one per run that merged late labels
#: into it); one more folds them into one. Bounds what reading a window merges.
MAX_PARTS = 8
_RETRIES = 3
#: Least work worth a child process (ForkedCopy): a fork costs 10-30 ms of the job's time (more
#: with a bigger heap to map), a part 0.2 ms to pack and an hour window 2-4 ms to compute.
FORK_MIN_PARTS = 64
FORK_MIN_WINDOWS = 8


@dataclass(frozen=True)
class EvalConfig:
    cohort_keys: tuple[str, ...]
    max_cohort_values: int
    windows: tuple[tuple[str, int], ...]  # (name, seconds)
    cache_bytes: int = 0
    fork: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EvalConfig:
        return cls(
            cohort_keys=tuple(settings.cohort_keys),
            max_cohort_values=settings.max_cohort_values,
            windows=tuple((w, parse_window(w)) for w in settings.windows),
            cache_bytes=settings.eval_state_cache_mb << 20,
            fork=settings.eval_fork,
        )


def hour_floor(ts: datetime) -> datetime:
    return ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def aligned_start(hour: datetime, seconds: int) -> datetime:
    offset = int((hour - _ALIGN_ORIGIN).total_seconds()) // seconds * seconds
    return _ALIGN_ORIGIN + timedelta(seconds=offset)


def evaluate(engine: Engine, model: str, *, settings: Settings, clock: Callable[[], datetime]) -> str:
    """Bring ``model``'s hour states and metric windows up to date; returns a summary line."""
    config = EvalConfig.from_settings(settings)
    with engine.connect() as conn:
        spec = model_specs(conn, [model]).get(model)
        marks = conn.execute(
            sa.select(t.dirty_hours.c.hour_start, t.dirty_hours.c.marked_at).where(t.dirty_hours.c.model == model)
        ).all()
    if spec is None:
        return "model not registered"
    dirty = [hour for hour, marked in marks if marked != WINDOWS_PENDING]
    # hours an earlier run brought up to date without refreshing their windows (it died or failed)
    changed: set[datetime] = {hour for hour, marked in marks if marked == WINDOWS_PENDING}
    for hour in sorted(dirty):
        if _retrying(lambda h=hour: recompute_hour(engine, spec, h, config)):  # type: ignore[misc]
            changed.add(hour)
    increments = _retrying(lambda: merge_increments(engine, spec, config))
    changed |= increments
    windows = refresh_windows(engine, spec, changed, config, now=clock())
    _windows_done(engine, model, changed)
    return f"{len(dirty)} dirty hours recomputed, late labels merged into {len(increments)} hours, {windows} windows updated"


def _retrying(step: Callable[[], T]) -> T:
    """Run a step; retry it when PostgreSQL reports a serialisation conflict with a writer."""
    for attempt in range(_RETRIES):
        try:
            return step()
        except sa.exc.OperationalError as exc:
            if "could not serialize" not in str(exc) or attempt == _RETRIES - 1:
                raise
            log.info("retrying after a concurrent write: %s", str(exc).splitlines()[0])
    raise AssertionError("unreachable: the last attempt returns or raises")


@contextmanager
def _snapshot(engine: Engine) -> Iterator[Connection]:
    """A write transaction that reads one consistent snapshot (REPEATABLE READ on PostgreSQL)."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
        return
    with write_transaction(engine) as conn:
        yield conn


# --------------------------------------------------------------------------------------------
# hour states


def recompute_hour(engine: Engine, spec: ModelSpec, hour: datetime, config: EvalConfig) -> bool:
    """Recompute one dirty hour from its rows. Returns False when it was no longer dirty."""
    d, inc = t.dirty_hours, t.label_increments
    now = datetime.now(UTC)
    with _snapshot(engine) as conn:
        marked = conn.execute(sa.select(d.c.marked_at).where(d.c.model == spec.name, d.c.hour_start == hour)).scalar()
        if marked is None:
            return False
        rows = read_hour(conn, spec.name, spec.task, hour)
        states = slice_states(rows, spec, config.cohort_keys, config.max_cohort_values)
        conn.execute(sa.delete(t.eval_states).where(t.eval_states.c.model == spec.name, t.eval_states.c.hour_start == hour))
        _insert_states(conn, spec.name, hour, states, now)
        # the hour's labels in this snapshot are in its states now; the DELETE sees the same
        # snapshot, so an increment committed meanwhile stays for the next run
        conn.execute(sa.delete(inc).where(inc.c.model == spec.name, inc.c.prediction_ts >= hour, inc.c.prediction_ts < hour + HOUR))
    if (cache := state_cache(engine, config.cache_bytes)) is not None:
        cache.put(spec.name, hour, [(key, 0, now) for key in states], states)
    with write_transaction(engine) as conn:
        conn.execute(
            sa.update(d).where(d.c.model == spec.name, d.c.hour_start == hour, d.c.marked_at == marked).values(marked_at=WINDOWS_PENDING)
        )
    return True


def _windows_done(engine: Engine, model: str, hours: set[datetime]) -> None:
    """Drop the pending marks of hours whose windows were refreshed. A writer that marked an hour
    again meanwhile set its own time, so that mark stays and the hour is recomputed next run."""
    if not hours:
        return
    d = t.dirty_hours
    with write_transaction(engine) as conn:
        conn.execute(
            sa.delete(d).where(d.c.model == model, d.c.hour_start == sa.bindparam("h"), d.c.marked_at == WINDOWS_PENDING),
            [{"h": h} for h in sorted(hours)],
        )


#: The state columns of ``eval_states``, and all its columns in the order of the rows
#: :func:`merge_increments` writes.
STATE_COLUMNS = tuple(StateColumns.__annotations__)
_PART_COLUMNS = ("model", "hour_start", "version", "cohort_key", "cohort_value", "part", "computed_at", *STATE_COLUMNS)


def merge_increments(engine: Engine, spec: ModelSpec, config: EvalConfig) -> set[datetime]:
    """Merge the first labels of already-evaluated predictions into their hours' states.

    One snapshot for all of them, and what the labels add is written as a new *part* of each
    hour's slice states (``eval_states.part``): a run's cost follows the number of late labels,
    not the number of hours they fall in nor the size of those hours. A slice that would pass
    :data:`MAX_PARTS` parts has them folded back into one. Returns the hours whose states changed.
    An hour whose states are cached is cached again with what the labels added, so the windows
    read it from memory.
    """
    es = t.eval_states
    cache = state_cache(engine, config.cache_bytes)
    with _snapshot(engine) as conn:
        # deleted as they are read: in this snapshot, so one committed meanwhile stays for the next run
        rows = take_increments(conn, spec.name, spec.task, MAX_INCREMENTS_PER_RUN)
        if len(rows) == 0:
            return set()
        by_hour: dict[datetime, list[int]] = defaultdict(list)
        for i, ts in enumerate(rows.ts):
            by_hour[hour_floor(datetime.fromtimestamp(float(ts), UTC))].append(i)
        # the stored rows of those hours (no state read): each slice's last part and part count
        stored = _row_versions(conn, spec.name, t.eval_states.c.hour_start.in_(sorted(by_hour)))
        for hour in [h for h in by_hour if h not in stored]:  # never evaluated: recompute the hour instead
            _mark_dirty(conn, spec.name, hour)
            del by_hour[hour]
        now = datetime.now(UTC)
        full: set[datetime] = set()
        merged: dict[datetime, tuple[list[RowVersion], dict[SliceKey, SliceState]]] = {}
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

        # On PostgreSQL (Linux) a child process packs the parts and the server stores them while
        # this process merges them into the cached hours (config.fork); without one, they are
        # packed as the COPY sends them.
        fork = config.fork and conn.dialect.name == "postgresql" and FORK_AVAILABLE and len(parts) >= FORK_MIN_PARTS
        with ForkedCopy(conn, es, _PART_COLUMNS, part_rows) if fork else contextlib.nullcontext() as child:
            if child is None:
                copy_rows(conn, es, _PART_COLUMNS, part_rows())
            if cache is not None:
                for hour in by_hour:
                    if (old := cache.get(spec.name, hour, stored[hour])) is not None:
                        merged[hour] = (list(stored[hour]), dict(old))
                for hour, key, part, add in parts:
                    if hour in merged:
                        versions, states = merged[hour]
                        versions.append((key, part, now))
                        states[key] = SliceState.merge(states[key], add)
            if child is not None:
                child.wait()
        if full:
            merged.update(_fold_parts(conn, spec.name, sorted(full), now))
    if cache is not None:  # committed: these are the stored rows now
        for hour, (versions, states) in merged.items():
            cache.put(spec.name, hour, versions, states)
    # outside the snapshot: a concurrent writer may be marking these hours right now
    with write_transaction(engine) as conn:
        _windows_pending(conn, spec.name, by_hour)
    return set(by_hour)


def _fold_parts(
    conn: Connection, model: str, hours: Sequence[datetime], now: datetime
) -> dict[datetime, tuple[list[RowVersion], dict[SliceKey, SliceState]]]:
    """Replace the parts of every slice of ``hours`` by their merge, as part 0; returns the merged
    states of each hour with their new row versions."""
    es = t.eval_states
    with_parts = _load_parts(fetch_binary(conn, sa.select(es).where(es.c.model == model, es.c.hour_start.in_(hours))))
    conn.execute(sa.delete(es).where(es.c.model == model, es.c.hour_start.in_(hours)))
    bulk_insert(conn, es, [
        {"model": model, "hour_start": hour, "version": key.version, "cohort_key": key.cohort_key,
         "cohort_value": key.cohort_value, "part": 0, "computed_at": now, **state.blobs()}
        for hour, (_, slices) in with_parts.items() for key, state in slices.items()
    ])  # fmt: skip
    return {hour: ([(key, 0, now) for key in slices], slices) for hour, (_, slices) in with_parts.items()}


def _row_versions(conn: Connection, model: str, hours: sa.ColumnElement[bool]) -> dict[datetime, frozenset[RowVersion]]:
    """The (slice, part, computed_at) of every stored state row of the hours ``hours`` selects."""
    es = t.eval_states.c
    found: dict[datetime, set[RowVersion]] = defaultdict(set)
    for r in conn.execute(
        sa.select(es.hour_start, es.version, es.cohort_key, es.cohort_value, es.part, es.computed_at).where(es.model == model, hours)
    ):
        found[r.hour_start].add((SliceKey(r.version, r.cohort_key, r.cohort_value), r.part, r.computed_at))
    return {hour: frozenset(v) for hour, v in found.items()}


def _windows_pending(conn: Connection, model: str, hours: Iterable[datetime]) -> None:
    """Mark hours whose states changed as waiting for their windows (unless dirty anyway)."""
    from monitor.server.store.writes import _insert

    values = [{"model": model, "hour_start": hour, "marked_at": WINDOWS_PENDING} for hour in sorted(hours)]
    if values:
        conn.execute(_insert(conn.dialect.name == "postgresql", t.dirty_hours).on_conflict_do_nothing(), values)


def _insert_states(conn: Connection, model: str, hour: datetime, states: dict[SliceKey, SliceState], now: datetime) -> None:
    if not states:
        return
    bulk_insert(conn, t.eval_states, [
        {"model": model, "hour_start": hour, "version": k.version, "cohort_key": k.cohort_key,
         "cohort_value": k.cohort_value, "part": 0, "computed_at": now, **s.blobs()}
        for k, s in states.items()
    ])  # fmt: skip


def _mark_dirty(conn: Connection, model: str, hour: datetime) -> None:
    from monitor.server.store.writes import mark_dirty

    mark_dirty(conn, {(model, hour)}, datetime.now(UTC), pg=conn.dialect.name == "postgresql")


# --------------------------------------------------------------------------------------------
# windows


@dataclass(frozen=True)
class WindowSpan:
    name: str
    start: datetime
    end: datetime


def refresh_windows(engine: Engine, spec: ModelSpec, changed: set[datetime], config: EvalConfig, *, now: datetime) -> int:
    """Re-reduce the aligned windows that contain a changed hour and the rolling latest windows."""
    latest_end = hour_floor(now) + HOUR
    aligned: set[WindowSpan] = set()
    latest: list[WindowSpan] = []
    with engine.connect() as conn:
        ends = dict(
            conn.execute(
                sa.select(t.metric_latest.c.window, sa.func.max(t.metric_latest.c.window_end))
                .where(t.metric_latest.c.model == spec.name, t.metric_latest.c.metric.not_in(DRIFT_JOB_METRICS))
                .group_by(t.metric_latest.c.window)
            ).all()
        )
    for name, seconds in config.windows:
        width = timedelta(seconds=seconds)
        for hour in changed:
            start = aligned_start(hour, seconds)
            aligned.add(WindowSpan(name, start, start + width))
        span = WindowSpan(name, latest_end - width, latest_end)
        if ends.get(name) != latest_end or any(span.start <= h < span.end for h in changed):
            latest.append(span)
    if not aligned and not latest:
        return 0
    spans = [*aligned, *latest]
    cache = state_cache(engine, config.cache_bytes)
    merged = _WindowStates(_load_hours(engine, spec.name, min(s.start for s in spans), max(s.end for s in spans), cache))
    computed_at = datetime.now(UTC)

    def history(spans: Iterable[WindowSpan]) -> Iterator[tuple[object, ...]]:
        for span in spans:
            yield from _window_rows(spec, span, merged.of(span), confusion=False, computed_at=computed_at)

    def rolling() -> list[dict[str, object]]:
        return [
            dict(zip(METRIC_ROW_COLUMNS, row, strict=True))
            for span in latest for row in _window_rows(spec, span, merged.of(span), confusion=True, computed_at=computed_at)
        ]  # fmt: skip

    own_metrics = t.metric_points.c.metric.not_in(DRIFT_JOB_METRICS)
    # On PostgreSQL the rows are computed as the COPY sends them, so the server stores one window's
    # rows while the next one's are computed; the transaction holds no lock a reader waits for.
    # There, on Linux (config.fork), the windows shorter than a day, which merge hours only, are a
    # queue that a child process (ForkedCopy: a second core) and this one work off: this one first
    # computes the longer windows, whose merged days it shares with the rolling windows, then takes
    # short windows the child has not taken yet. The child's rows are stored as it computes them.
    postgres = engine.dialect.name == "postgresql"
    ordered = sorted(aligned, key=lambda s: (s.name, s.start))
    short = [s for s in ordered if s.end - s.start < DAY] if config.fork and postgres and FORK_AVAILABLE else []
    if len(short) < FORK_MIN_WINDOWS:
        short = []
    points: Iterable[tuple[object, ...]] = history(s for s in ordered if not short or s.end - s.start >= DAY)
    current: list[dict[str, object]] = []
    if not postgres:  # SQLite's write lock stops every writer (ingest too): computed before it is taken
        points, current = list(points), rolling()
    with write_transaction(engine) as conn:
        if aligned:
            mp = t.metric_points.c
            # per window name, an IN list of starts: PostgreSQL hashes it, where a row-value IN of
            # (name, start) pairs was an OR of every pair tested on each row (0.13 s against 0.04 s
            # for the 45 000 rows of 178 windows). One statement per table, not one per window:
            # the drift job's rows share these tables (same windows, its own metrics) and are left be.
            starts: dict[str, list[datetime]] = defaultdict(list)
            for s in ordered:
                starts[s.name].append(s.start)
            in_windows = sa.or_(*(sa.and_(mp.window == name, mp.window_start.in_(listed)) for name, listed in starts.items()))
            conn.execute(sa.delete(t.metric_points).where(mp.model == spec.name, own_metrics, in_windows))
        if short:
            claims = _Claims()
            with ForkedCopy(conn, t.metric_points, METRIC_ROW_COLUMNS, lambda: history(claims.take(short, child=True))) as child:
                current = rolling()
                points = [*points, *history(claims.take(short, child=False))]
                child.wait()
        elif postgres:
            current = rolling()
        if aligned:
            copy_rows(conn, t.metric_points, METRIC_ROW_COLUMNS, points)
        if latest:
            replace_latest(
                conn, spec.name, [s.name for s in latest], t.metric_latest.c.metric.not_in(DRIFT_JOB_METRICS), current,
                cohort_keys=config.cohort_keys,
            )  # fmt: skip
    return len(spans)


class _Claims:
    """Hands out each of 0, 1, 2, ... once, to this process and to a child forked after it: the
    short windows are a queue both work off, so neither waits while the other has some left."""

    def __init__(self) -> None:
        try:
            self._next: Any = multiprocessing.get_context("fork").Value("q", 0)
        except OSError:  # no POSIX semaphores here (no /dev/shm): the child takes every item
            self._next = None

    def take(self, items: Sequence[T], *, child: bool) -> Iterator[T]:
        if self._next is None:
            yield from items if child else ()
            return
        while True:
            with self._next.get_lock():
                i = self._next.value
                self._next.value = i + 1
            if i >= len(items):
                return
            yield items[i]


class _WindowStates:
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
                    self.days[at] = merge_slices(self.hours[h] for h in _hours(at, at + DAY) if h in self.hours)
                parts.append(self.days[at])
                at += DAY
            else:
                if at in self.hours:
                    parts.append(self.hours[at])
                at += HOUR
        return merge_slices(parts)


def _hours(start: datetime, end: datetime) -> Iterator[datetime]:
    while start < end:
        yield start
        start += HOUR


def _load_hours(
    engine: Engine, model: str, start: datetime, end: datetime, cache: HourStateCache | None = None
) -> dict[datetime, dict[SliceKey, SliceState]]:
    """The slice states of the hours in ``[start, end)``, each the merge of its parts: from
    ``cache`` where it holds exactly the stored rows, the rest read and decoded (and cached)."""
    es = t.eval_states
    in_range = sa.and_(es.c.hour_start >= start, es.c.hour_start < end)
    with engine.connect() as conn:
        if cache is None:
            loaded = _load_parts(fetch_binary(conn, sa.select(es).where(es.c.model == model, in_range)))
            return {hour: slices for hour, (_, slices) in loaded.items()}
        hours: dict[datetime, dict[SliceKey, SliceState]] = {}
        stored = _row_versions(conn, model, in_range)
        for hour, versions in stored.items():
            if (cached := cache.get(model, hour, versions)) is not None:
                hours[hour] = cached
        missing = sorted(set(stored) - set(hours))
        if missing:
            which = in_range if len(missing) == len(stored) else es.c.hour_start.in_(missing)
            # cached under the versions read with the states: a write between the two reads
            # leaves this run with the newer states and the cache consistent
            for hour, (read, slices) in _load_parts(fetch_binary(conn, sa.select(es).where(es.c.model == model, which))).items():
                cache.put(model, hour, read, slices)
                hours[hour] = slices
    return hours


def _load_parts(rows: Iterable[Any]) -> dict[datetime, tuple[list[RowVersion], dict[SliceKey, SliceState]]]:
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


def load_window(engine: Engine, model: str, start: datetime, end: datetime) -> dict[SliceKey, SliceState]:
    """The merged states of every slice over ``[start, end)`` (used by the query API too)."""
    return merge_slices(_load_hours(engine, model, start, end).values())


#: The columns of :func:`_window_rows`' tuples.
METRIC_ROW_COLUMNS = ("model", "window", "window_start", "window_end", "version", "cohort_key", "cohort_value",
                      "metric", "class", "value", "sample_count", "label_coverage", "computed_at")  # fmt: skip


def _window_rows(
    spec: ModelSpec,
    span: WindowSpan,
    slices: dict[SliceKey, SliceState],
    *,
    confusion: bool,
    computed_at: datetime,
) -> list[tuple[object, ...]]:
    seconds = (span.end - span.start).total_seconds()
    rows: list[tuple[object, ...]] = []
    for key, state in sorted(slices.items()):
        whole = key.cohort_key == ""
        coverage = state.labelled / state.predictions if state.predictions else None
        points: list[Point] = slice_points(state, spec, seconds, per_class=whole, confusion=confusion and whole)
        rows += [
            (spec.name, span.name, span.start, span.end, key.version, key.cohort_key, key.cohort_value,
             p.metric, p.cls, p.value, p.sample_count, coverage, computed_at)
            for p in points
        ]  # fmt: skip
    return rows
