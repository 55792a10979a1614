"""APScheduler wiring: every tick, each registered job runs once per model (skipping models whose
lock another process holds); the weekly reports run on a cron trigger (``reports.day`` at
``reports.time``, UTC). ``cvmon serve`` starts it next to the API unless CVMON_SCHEDULER=0;
``cvmon worker`` runs only this."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine

from monitor.server.jobs import Worker
from monitor.server.settings import Settings

log = logging.getLogger("cvmon.jobs")
#: APScheduler logs "Running job ..." and "... executed successfully" at INFO for every run.
_EXECUTOR_LOGGER = "apscheduler.executors"


class PerRunAtDebug(logging.Filter):
    """Demotes APScheduler's per-run INFO lines to DEBUG (kept when DEBUG is on); its warnings
    (a missed or skipped run) and errors pass as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


def quiet_executor_logs() -> None:
    """Install :class:`PerRunAtDebug` on APScheduler's executor loggers (once per process)."""
    for name in (f"{_EXECUTOR_LOGGER}.default", _EXECUTOR_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(f, PerRunAtDebug) for f in logger.filters):
            logger.addFilter(PerRunAtDebug())


def start_scheduler(engine: Engine, settings: Settings, clock: Callable[[], datetime]) -> BackgroundScheduler:
    """Start the background scheduler; the caller shuts it down (``scheduler.shutdown()``).

    Every tick logs at DEBUG only (APScheduler's lines too): at a 10 s interval INFO would carry
    half a dozen lines a tick that nobody acts on."""
    quiet_executor_logs()
    worker = Worker(engine, settings, clock=clock)
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30})

    def tick() -> None:
        try:
            worker.run_once()
        except Exception:  # run_once already isolates each job; this guards the loop itself
            log.exception("scheduler tick failed")

    def housekeeping() -> None:
        try:
            worker.maintenance()
        except Exception:
            log.exception("housekeeping failed")

    scheduler.add_job(tick, "interval", seconds=settings.evaluate_interval_seconds, id="models", next_run_time=clock())
    scheduler.add_job(housekeeping, "interval", minutes=10, id="housekeeping", next_run_time=clock())
    reports = settings.reports
    if reports.enabled:

        def weekly_reports() -> None:
            try:
                worker.run_once(jobs=["report"])
            except Exception:
                log.exception("weekly reports failed")

        # A scheduler that was down at the trigger time still writes the reports within 6 hours.
        trigger = CronTrigger(day_of_week=reports.cron_day, hour=reports.hour, minute=reports.minute, timezone="UTC")
        scheduler.add_job(weekly_reports, trigger, id="reports", misfire_grace_time=6 * 3600)
    scheduler.start()
    log.info("scheduler started: model jobs every %ss", settings.evaluate_interval_seconds)
    return scheduler
