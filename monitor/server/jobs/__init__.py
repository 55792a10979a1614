"""Scheduled jobs: plain functions ``job(engine, model, *, settings, clock)`` plus the runner.

==========  ===========================================================================
evaluate    hour states, late labels, metric history and the latest windows (per model)
drift       completed windows scored against pinned references, label-free estimates (per model)
slo         time-slice SLO events (ece, drift, map), folding old SLO counts (models with SLOs)
notify      the built-in burn-rate notifier (models with SLOs, when a receiver is configured)
webhooks    due automation events delivered from the outbox (models with webhooks configured)
report      last week's HTML report (weekly, on its own cron trigger; only when named)
==========  ===========================================================================

Housekeeping (not per model): daily partitions ahead, ground truth that waited for a
prediction which arrived concurrently, retention (monitor.server.jobs.retention).
A :class:`Worker` is what runs them in one process: the engine, the settings, the clock and
what the jobs keep between runs (the decoded hour states). The scheduler holds one; ``cvmon jobs
run-once`` and the tests make one for a single pass (:func:`run_once`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from functools import partial

from sqlalchemy import Engine

from monitor.server.jobs import slo as slo_jobs
from monitor.server.jobs.drift import drift
from monitor.server.jobs.evaluate import evaluate
from monitor.server.jobs.report import report
from monitor.server.jobs.retention import apply_retention, expire_samples
from monitor.server.jobs.runner import Job, Outcome, run_job
from monitor.server.jobs.webhooks import has_webhooks, webhooks
from monitor.server.services.ingest import adopt_waiting_ground_truth
from monitor.server.services.models import model_names
from monitor.server.services.samples import SampleRuntime
from monitor.server.services.state_cache import HourStateCache
from monitor.server.settings import Settings
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager

log = logging.getLogger("cvmon.jobs")

#: Jobs run for every model on every tick, in this order.
MODEL_JOBS: dict[str, Job] = {
    "evaluate": evaluate, "drift": drift, "slo": slo_jobs.slo, "notify": slo_jobs.notify, "webhooks": webhooks,
}  # fmt: skip
#: Jobs with a schedule of their own (a cron trigger in the scheduler): run only when named.
WEEKLY_JOBS: dict[str, Job] = {"report": report}
#: Jobs that run only for some models: a model without SLOs has no events to count or notify.
_ONLY_FOR: dict[str, Callable[[Settings, str], bool]] = {
    "slo": slo_jobs.has_slos, "notify": slo_jobs.has_slos, "webhooks": has_webhooks,
}  # fmt: skip


class Worker:
    """The jobs of one process: engine, settings and clock, and what the jobs keep between runs.

    Thread-safe: the scheduler may run several ticks' jobs in parallel threads.
    """

    def __init__(self, engine: Engine, settings: Settings, *, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        cache_bytes = settings.eval_state_cache_mb << 20
        #: Decoded hour states of the evaluate job (None when ``eval_state_cache_mb`` is 0).
        self.state_cache = HourStateCache(cache_bytes) if cache_bytes > 0 else None
        self.partitions = PartitionManager(engine)
        #: The sample store and keys (None when no model opted in to samples).
        self.samples = SampleRuntime.from_settings(settings.samples)

    def jobs(self) -> dict[str, Job]:
        """Every job by name, bound to what this worker keeps."""
        return {**MODEL_JOBS, "evaluate": partial(evaluate, cache=self.state_cache), **WEEKLY_JOBS}

    def run_once(
        self,
        *,
        models: Sequence[str] | None = None,
        jobs: Sequence[str] | None = None,
        on_done: Callable[[Outcome], None] | None = None,
    ) -> list[Outcome]:
        """Run each job once for each model (all registered models by default); never raises for a job."""
        with self.engine.connect() as conn:
            names = model_names(conn) if models is None else list(models)
        known = self.jobs()
        selected = {name: job for name, job in known.items() if (name in MODEL_JOBS if jobs is None else name in jobs)}
        outcomes = []
        for model in names:
            for name, job in selected.items():
                if name in _ONLY_FOR and not _ONLY_FOR[name](self.settings, model):
                    continue
                outcome = run_job(self.engine, name, job, model, settings=self.settings, clock=self.clock)
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)
        return outcomes

    def maintenance(self) -> None:
        """Partitions for the coming days; ground truth left waiting by a concurrent prediction
        write; retention (expired partitions dropped, old rows of the small tables deleted)."""
        self.partitions.ensure_ahead(self.clock(), self.settings.partition_days_ahead)
        with write_transaction(self.engine) as conn:
            adopted = adopt_waiting_ground_truth(conn, now=self.clock(), slos=self.settings.slos)
        if adopted:
            log.info("joined %d waiting ground-truth records to their predictions", adopted)
        apply_retention(self.engine, self.settings.retention, now=self.clock(), partitions=self.partitions)
        if self.samples is not None:
            expire_samples(self.engine, self.samples, now=self.clock())


def run_once(
    engine: Engine,
    settings: Settings,
    *,
    clock: Callable[[], datetime],
    models: Sequence[str] | None = None,
    jobs: Sequence[str] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """One pass of the jobs by a worker made for it (nothing kept between calls)."""
    return Worker(engine, settings, clock=clock).run_once(models=models, jobs=jobs, on_done=on_done)


def maintenance(engine: Engine, settings: Settings, *, clock: Callable[[], datetime]) -> None:
    """One housekeeping pass by a worker made for it."""
    Worker(engine, settings, clock=clock).maintenance()


__all__ = ["MODEL_JOBS", "WEEKLY_JOBS", "Worker", "maintenance", "run_once"]
