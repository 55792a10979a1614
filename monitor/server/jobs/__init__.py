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
``run_once`` is what every scheduler tick and ``cvmon jobs run-once`` call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy import Engine

from monitor.server.jobs.drift import drift
from monitor.server.jobs.evaluate import evaluate
from monitor.server.jobs.report import report
from monitor.server.jobs.retention import apply_retention
from monitor.server.jobs.runner import Job, Outcome, run_job
from monitor.server.jobs.webhooks import has_webhooks, webhooks
from monitor.server.settings import Settings
from monitor.server.slo import jobs as slo_jobs
from monitor.server.store.partitions import PartitionManager
from monitor.server.store.registry import model_names
from monitor.server.store.writes import adopt_waiting_ground_truth

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


def run_once(
    engine: Engine,
    settings: Settings,
    *,
    clock: Callable[[], datetime],
    models: Sequence[str] | None = None,
    jobs: Sequence[str] | None = None,
    on_done: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run each job once for each model (all registered models by default); never raises for a job."""
    with engine.connect() as conn:
        names = model_names(conn) if models is None else list(models)
    known = {**MODEL_JOBS, **WEEKLY_JOBS}
    selected = {name: job for name, job in known.items() if (name in MODEL_JOBS if jobs is None else name in jobs)}
    outcomes = []
    for model in names:
        for name, job in selected.items():
            if name in _ONLY_FOR and not _ONLY_FOR[name](settings, model):
                continue
            outcome = run_job(engine, name, job, model, settings=settings, clock=clock)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
    return outcomes


def maintenance(engine: Engine, settings: Settings, *, clock: Callable[[], datetime]) -> None:
    """Partitions for the coming days; ground truth left waiting by a concurrent prediction write;
    retention (expired partitions dropped, old rows of the small tables deleted)."""
    partitions = PartitionManager(engine)
    partitions.ensure_ahead(clock(), settings.partition_days_ahead)
    adopted = adopt_waiting_ground_truth(engine, now=clock(), slos=settings.slos)
    if adopted:
        log.info("joined %d waiting ground-truth records to their predictions", adopted)
    apply_retention(engine, settings.retention, now=clock(), partitions=partitions)


__all__ = ["MODEL_JOBS", "WEEKLY_JOBS", "maintenance", "run_once"]
