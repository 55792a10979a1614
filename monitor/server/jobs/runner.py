"""Running a job for a model: the lock, timing, bookkeeping in ``job_runs``, and never raising.

A job is a plain function ``job(engine, model, *, settings, clock) -> str`` (a one-line summary of
what it did); tests call jobs directly. The runner is what the scheduler and ``cvmon jobs
run-once`` call: a failure is logged with its model and recorded, and the next tick retries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

import sqlalchemy as sa
from sqlalchemy import Engine

from monitor.server.jobs.locks import job_lock
from monitor.server.services.job_runs import record_run
from monitor.server.settings import Settings

log = logging.getLogger("cvmon.jobs")

Clock = Callable[[], datetime]


class Job(Protocol):
    def __call__(self, engine: Engine, model: str, *, settings: Settings, clock: Clock) -> str: ...


@dataclass(frozen=True)
class Outcome:
    job: str
    model: str
    status: Literal["ok", "skipped", "failed"]
    seconds: float
    detail: str


def run_job(engine: Engine, name: str, job: Job, model: str, *, settings: Settings, clock: Clock) -> Outcome:
    """Run ``job`` for ``model`` unless another process is running it; never raises."""
    with job_lock(engine, name, model) as held:
        if not held:
            return Outcome(name, model, "skipped", 0.0, "running in another process")
        started = clock()
        t0 = time.perf_counter()
        try:
            detail = job(engine, model, settings=settings, clock=clock)
        except Exception as exc:  # a failing job must never take the scheduler down
            seconds = time.perf_counter() - t0
            log.exception("job %s failed for model %s after %.2fs", name, model, seconds)
            message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:2000]
            _record(engine, name, model, started, seconds, error=message)
            return Outcome(name, model, "failed", seconds, message)
        seconds = time.perf_counter() - t0
        _record(engine, name, model, started, seconds, error=None, finished=clock())
        # every tick, every model: DEBUG (what a person acts on -- failures, pages -- is logged above
        # WARNING or by the jobs themselves)
        log.debug("job %s for model %s: %s (%.2fs)", name, model, detail, seconds)
        return Outcome(name, model, "ok", seconds, detail)


def _record(
    engine: Engine, job: str, model: str, started: datetime, seconds: float, *, error: str | None, finished: datetime | None = None
) -> None:
    try:
        with engine.begin() as conn:
            record_run(conn, job, model, started, seconds, error=error, finished=finished)
    except sa.exc.SQLAlchemyError:  # bookkeeping must not turn a finished job into a crash
        log.exception("could not record the run of job %s for model %s", job, model)
