"""The evaluate job: per-hour states, late labels, windows, metric history.

The steps and their invariants are :mod:`monitor.server.services.evaluation`'s; this module owns
the transactions. Each dirty hour is recomputed in its own snapshot transaction (REPEATABLE READ
on PostgreSQL), and its dirty mark is consumed right after, by its value, in a short transaction
of its own: ingest marks the current hour with every batch, so a mark consumed inside the
snapshot would fail it for good under steady traffic. The late labels are merged in one
snapshot, then the windows are stored in one write transaction; on SQLite their rows are
computed before it (SQLite's write lock stops every writer, ingest too), on PostgreSQL while the
COPY sends them.

Decoded hour states are kept between runs in the worker's cache
(:class:`~monitor.server.services.state_cache.HourStateCache`), put there only after the
transaction that wrote them has committed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from monitor.server.services import evaluation as ev
from monitor.server.services.models import model_spec
from monitor.server.services.state_cache import HourStateCache
from monitor.server.settings import Settings
from monitor.server.store.engine import write_transaction
from monitor.wire import ModelSpec

log = logging.getLogger("cvmon.jobs.evaluate")

T = TypeVar("T")
_RETRIES = 3


def evaluate(
    engine: Engine, model: str, *, settings: Settings, clock: Callable[[], datetime], cache: HourStateCache | None = None
) -> str:
    """Bring ``model``'s hour states and metric windows up to date; returns a summary line."""
    config = ev.EvalConfig.from_settings(settings)
    with engine.connect() as conn:
        spec = model_spec(conn, model)
        marks = ev.marked_hours(conn, model)
    if spec is None:
        return "model not registered"
    # hours an earlier run brought up to date without refreshing their windows (it died or failed)
    changed: set[datetime] = set(marks.windows_pending)
    for hour in marks.dirty:
        if _retrying(lambda h=hour: _recompute(engine, spec, h, config, cache)):  # type: ignore[misc]
            changed.add(hour)
    merged = _retrying(lambda: _merge_increments(engine, spec, config, cache))
    changed |= merged
    windows = _refresh_windows(engine, spec, changed, config, cache, now=clock())
    if changed:
        with write_transaction(engine) as conn:
            ev.windows_done(conn, model, changed)
    return f"{len(marks.dirty)} dirty hours recomputed, late labels merged into {len(merged)} hours, {windows} windows updated"


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


def _recompute(engine: Engine, spec: ModelSpec, hour: datetime, config: ev.EvalConfig, cache: HourStateCache | None) -> bool:
    """Recompute one dirty hour; False when it was no longer dirty."""
    now = datetime.now(UTC)
    with _snapshot(engine) as conn:
        done = ev.recompute_hour(conn, spec, hour, config, now=now)
    if done is None:
        return False
    if cache is not None:
        cache.put(spec.name, hour, *done.cache_entry(now))
    with write_transaction(engine) as conn:
        ev.states_current(conn, spec.name, hour, done.marked)
    return True


def _merge_increments(engine: Engine, spec: ModelSpec, config: ev.EvalConfig, cache: HourStateCache | None) -> set[datetime]:
    with _snapshot(engine) as conn:
        merged = ev.merge_increments(conn, spec, config, now=datetime.now(UTC), cache=cache)
    if cache is not None:  # committed: these are the stored rows now
        for hour, (versions, states) in merged.cache.items():
            cache.put(spec.name, hour, versions, states)
    if merged.hours:  # outside the snapshot: a concurrent writer may be marking these hours right now
        with write_transaction(engine) as conn:
            ev.windows_pending(conn, spec.name, merged.hours)
    return merged.hours


def _refresh_windows(
    engine: Engine, spec: ModelSpec, changed: set[datetime], config: ev.EvalConfig, cache: HourStateCache | None, *, now: datetime
) -> int:
    """Re-reduce the aligned windows that contain a changed hour and the rolling latest windows."""
    with engine.connect() as conn:
        plan = ev.plan_windows(conn, spec, changed, config, now=now)
        if not plan:
            return 0
        states = ev.window_states(conn, spec.name, plan, cache)
    computed_at = datetime.now(UTC)
    history = ev.window_rows(spec, plan.aligned, states, config, confusion=False, computed_at=computed_at)
    if engine.dialect.name != "postgresql":  # computed before SQLite's write lock is taken
        rows = list(history)
        latest = list(ev.window_rows(spec, plan.latest, states, config, confusion=True, computed_at=computed_at))
        with write_transaction(engine) as conn:
            ev.store_windows(conn, spec, plan, rows, latest)
        return len(plan.spans)
    # PostgreSQL: the history rows are computed as the COPY sends them, so the server stores one
    # window's rows while the next one's are computed; the transaction holds no lock a reader waits for
    with write_transaction(engine) as conn:
        latest = list(ev.window_rows(spec, plan.latest, states, config, confusion=True, computed_at=computed_at))
        ev.store_windows(conn, spec, plan, history, latest)
    return len(plan.spans)
