"""One run per (job, model) at a time across every scheduler process.

PostgreSQL: a session-level advisory lock held on a dedicated connection for the duration of the
run. If the process dies (kill -9, OOM), PostgreSQL drops the connection and with it the lock,
so the next tick of any other process can take over. A busy lock means "someone else is doing
it": the caller skips, it does not wait.

SQLite: a lock per (job, model) inside this process. The embedded database is meant for one
``cvmon serve`` process; several processes on one SQLite file could run a job twice (harmless:
jobs are idempotent) and are documented as unsupported.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy import Engine

_local_locks: dict[tuple[str, str], threading.Lock] = {}
_guard = threading.Lock()


@contextmanager
def job_lock(engine: Engine, job: str, model: str) -> Iterator[bool]:
    """Yields True when this process holds the lock for (job, model), False when another does."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            args = {"job": job, "model": model}
            got = conn.execute(sa.text("SELECT pg_try_advisory_lock(hashtext(:job), hashtext(:model))"), args).scalar()
            conn.commit()
            try:
                yield bool(got)
            finally:
                if got:
                    conn.execute(sa.text("SELECT pg_advisory_unlock(hashtext(:job), hashtext(:model))"), args)
                    conn.commit()
        return
    with _guard:
        lock = _local_locks.setdefault((job, model), threading.Lock())
    got = lock.acquire(blocking=False)
    try:
        yield got
    finally:
        if got:
            lock.release()
