"""``cvmon jobs`` and ``cvmon worker``: the scheduled jobs, now or on a schedule."""

from __future__ import annotations

import sys

import click

from monitor.server.cli._common import MODEL, check_models, load_settings, now, open_engine


@click.group("jobs")
def jobs_group() -> None:
    """Run the scheduled jobs (evaluation of quality metrics, ...) by hand."""


@jobs_group.command("run-once")
@click.option("--model", "models", multiple=True, type=MODEL, help="Only this model (repeatable). Default: every registered model.")
@click.option("--job", "jobs", multiple=True,
              help="Only this job (repeatable): evaluate, drift, slo, notify, webhooks, or report (the weekly report, "
                   "which runs only when named). Default: every per-tick job.")  # fmt: skip
def run_once_cmd(models: tuple[str, ...], jobs: tuple[str, ...]) -> None:
    """Run the jobs once for every model, now, and report what each did.

    Safe while servers and workers run: a job already running elsewhere for a model is skipped.
    Exits 1 when a job failed.
    """
    from monitor.server.jobs import MODEL_JOBS, WEEKLY_JOBS, maintenance, run_once
    from monitor.server.services.models import model_names

    known = {**MODEL_JOBS, **WEEKLY_JOBS}
    unknown = sorted(set(jobs) - set(known))
    if unknown:
        raise click.ClickException(f"unknown job {unknown[0]!r}; jobs: {', '.join(known)}")
    settings = load_settings()
    engine = open_engine(settings)
    check_models(engine, models)
    with engine.connect() as conn:
        names = list(models) or model_names(conn)
    maintenance(engine, settings, clock=now)
    outcomes = []
    with click.progressbar(names, label="running jobs", show_pos=True, file=sys.stderr) as bar:
        for model in bar:
            outcomes += run_once(engine, settings, clock=now, models=[model], jobs=list(jobs) or None)
    for o in outcomes:
        click.echo(f"{o.job:<10} {o.model:<28} {o.status:<8} {o.seconds:7.2f}s  {o.detail}")
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        raise click.ClickException(f"{len(failed)} job(s) failed; see above and the log")


@click.command("worker")
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def worker(log_level: str) -> None:
    """Run the scheduled jobs without serving the API (scale jobs apart from ingest).

    Any number of workers and `cvmon serve` processes may run against one PostgreSQL database:
    each (job, model) runs in one process at a time. On SQLite run a single process.
    """
    import logging
    import signal
    import threading

    from monitor.server.jobs.scheduler import start_scheduler

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = load_settings()
    engine = open_engine(settings)
    scheduler = start_scheduler(engine, settings, now)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        scheduler.shutdown(wait=True)


commands = [jobs_group, worker]
