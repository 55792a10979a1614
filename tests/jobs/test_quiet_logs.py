"""A running scheduler logs nothing at INFO per tick: the per-run lines (APScheduler's "Running
job" / "executed successfully" and cvmon's per-job summary) are DEBUG, shown when DEBUG is on."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest

from monitor.server.jobs.scheduler import start_scheduler
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.store import migrate
from monitor.server.store.engine import make_engine, write_transaction

pytestmark = pytest.mark.slow  # three real scheduler ticks, a second apart


def _run_ticks(tmp_path, caplog, level: int) -> list[logging.LogRecord]:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / f'cvmon-{level}.db'}"
    settings = Settings(database_url=url, evaluate_interval_seconds=1)
    engine = make_engine(settings.sqlalchemy_url)
    try:
        migrate.upgrade(engine)
        with write_transaction(engine) as conn:
            register_model(conn, "digits", "classification", ["0", "1"], 0.5, now=datetime.now(UTC))
        caplog.clear()
        with caplog.at_level(level):
            scheduler = start_scheduler(engine, settings, clock=lambda: datetime.now(UTC))
            time.sleep(3.2)
            scheduler.shutdown(wait=True)
        return list(caplog.records)
    finally:
        engine.dispose()


def test_ticks_are_quiet_at_info_and_visible_at_debug(tmp_path, caplog):
    info = _run_ticks(tmp_path, caplog, logging.INFO)
    per_tick = [r for r in info if r.name.startswith(("apscheduler.executors", "cvmon.jobs")) and r.levelno >= logging.INFO]
    assert [r.getMessage() for r in per_tick] == ["scheduler started: model jobs every 1s"]

    debug = _run_ticks(tmp_path, caplog, logging.DEBUG)
    messages = [r.getMessage() for r in debug if r.levelno == logging.DEBUG]
    assert sum("executed successfully" in m for m in messages) >= 3  # the ticks ran
    assert any(m.startswith("job evaluate for model digits:") for m in messages)
