"""The weekly report job, its retention, its cron trigger, and the ``reports:`` settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from monitor.errors import ConfigError
from monitor.server.jobs import MODEL_JOBS, WEEKLY_JOBS, run_once
from monitor.server.jobs.report import report
from monitor.server.report_settings import ReportSettings, load_report_settings
from monitor.server.services.models import register_model
from monitor.server.services.reports import list_reports, save_report
from monitor.server.services.weeks import Week, last_complete_week, parse_week
from monitor.server.settings import Settings
from monitor.server.store.engine import write_transaction
from tests.reports.synth import CLASSES, REPORT_TIME


@pytest.fixture
def registered(db, model_name):
    with write_transaction(db.engine) as conn:
        register_model(conn, model_name, "classification", CLASSES, 0.5, now=REPORT_TIME - timedelta(days=30))
    return db


def stored_weeks(db, model):
    with db.engine.connect() as conn:
        return [r.week for r in list_reports(conn, model)]


def test_the_job_writes_last_weeks_report_once(registered, model_name):
    settings = Settings(database_url=registered.url)
    first = report(registered.engine, model_name, settings=settings, clock=lambda: REPORT_TIME)
    assert first.startswith("report 2026-W47 written (") and first.endswith("; 0 old removed")
    again = report(registered.engine, model_name, settings=settings, clock=lambda: REPORT_TIME + timedelta(minutes=5))
    assert again.startswith("report 2026-W47 exists (generated 2026-11-23 06:00)")
    assert stored_weeks(registered, model_name) == ["2026-W47"]


def test_a_report_written_before_its_week_ended_is_written_again(registered, model_name):
    settings = Settings(database_url=registered.url)
    with write_transaction(registered.engine) as conn:
        save_report(
            conn,
            model_name,
            parse_week("2026-W47"),
            "<!DOCTYPE html><title>early</title>",
            generated_at=REPORT_TIME - timedelta(days=2),
        )
    assert report(registered.engine, model_name, settings=settings, clock=lambda: REPORT_TIME).startswith(
        "report 2026-W47 written"
    )


def test_retention_keeps_the_newest_weeks(registered, model_name):
    settings = Settings(database_url=registered.url, reports=ReportSettings(retention_weeks=3))
    with write_transaction(registered.engine) as conn:
        for name in ("2026-W42", "2026-W43", "2026-W44", "2026-W45", "2026-W46"):
            save_report(conn, model_name, parse_week(name), "<!DOCTYPE html><title>x</title>", generated_at=REPORT_TIME)
    detail = report(registered.engine, model_name, settings=settings, clock=lambda: REPORT_TIME)
    assert detail.endswith("; 3 old removed")
    assert stored_weeks(registered, model_name) == ["2026-W47", "2026-W46", "2026-W45"]


def test_the_report_job_runs_only_when_named(registered, model_name):
    settings = Settings(database_url=registered.url)
    assert "report" in WEEKLY_JOBS and "report" not in MODEL_JOBS
    ticks = run_once(registered.engine, settings, clock=lambda: REPORT_TIME, models=[model_name], jobs=["evaluate"])
    assert [o.job for o in ticks] == ["evaluate"] and stored_weeks(registered, model_name) == []
    (weekly,) = run_once(registered.engine, settings, clock=lambda: REPORT_TIME, models=[model_name], jobs=["report"])
    assert weekly.status == "ok" and stored_weeks(registered, model_name) == ["2026-W47"]


def test_the_scheduler_writes_reports_on_the_configured_day_and_time(tmp_path):
    from monitor.server.jobs.scheduler import start_scheduler
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'cvmon.db'}")
    migrate.upgrade(engine)
    on = Settings(
        database_url=str(engine.url),
        reports=ReportSettings(day="tuesday", hour=7, minute=30),
        evaluate_interval_seconds=3600,
    )
    off = on.with_(reports=ReportSettings(enabled=False))
    clock = lambda: datetime(2026, 11, 16, 12, 0, tzinfo=UTC)  # noqa: E731
    scheduler = start_scheduler(engine, on, clock)
    try:
        job = scheduler.get_job("reports")
        assert str(job.trigger) == "cron[day_of_week='tue', hour='7', minute='30']"
        assert job.trigger.get_next_fire_time(None, clock()) == datetime(2026, 11, 17, 7, 30, tzinfo=UTC)
    finally:
        scheduler.shutdown(wait=True)
    scheduler = start_scheduler(engine, off, clock)
    try:
        assert scheduler.get_job("reports") is None
    finally:
        scheduler.shutdown(wait=True)
        engine.dispose()


def test_report_settings_come_from_cvmon_yaml_and_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./cvmon.yaml of the checkout
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "cvmon.yaml"
    config.write_text(
        "reports:\n  day: fri\n  time: 18:45\n  retention_weeks: 4\n"
    )  # unquoted 18:45: YAML's 1125 minutes
    settings = Settings.load({"CVMON_CONFIG": str(config), "CVMON_REPORTS_RETENTION_WEEKS": "6"})
    assert settings.reports == ReportSettings(enabled=True, day="friday", hour=18, minute=45, retention_weeks=6)
    assert settings.reports.time == "18:45" and settings.reports.cron_day == "fri"
    assert Settings.load({}).reports == ReportSettings()
    assert Settings.load({"CVMON_REPORTS_ENABLED": "0"}).reports.enabled is False


@pytest.mark.parametrize(
    ("section", "env", "message"),
    [
        pytest.param({"day": "someday"}, {}, "reports.day must be a weekday", id="bad-day"),
        pytest.param({"time": "25:00"}, {}, "reports.time must be HH:MM", id="bad-time"),
        pytest.param(
            {}, {"CVMON_REPORTS_TIME": "6am"}, "CVMON_REPORTS_TIME: reports.time must be HH:MM", id="bad-time-env"
        ),
        pytest.param(
            {"retention_weeks": 0}, {}, "retention_weeks must be a whole number of weeks >= 1", id="no-retention"
        ),
        pytest.param({"when": "monday"}, {}, "reports: unknown key 'when'", id="unknown-key"),
        pytest.param("monday", {}, "reports must be a mapping", id="not-a-mapping"),
    ],
)
def test_bad_report_settings_fail_at_load_with_the_key_to_fix(section, env, message):
    with pytest.raises(ConfigError, match=message):
        load_report_settings(section, env, source="cvmon.yaml")


@pytest.mark.parametrize(
    ("now", "week"),
    [
        pytest.param(datetime(2026, 11, 23, 6, 0, tzinfo=UTC), "2026-W47", id="monday-morning"),
        pytest.param(datetime(2026, 11, 29, 23, 59, tzinfo=UTC), "2026-W47", id="sunday-night"),
        pytest.param(datetime(2027, 1, 4, 0, 0, tzinfo=UTC), "2026-W53", id="iso-year-with-53-weeks"),
    ],
)
def test_the_last_complete_week_is_the_iso_week_before_now(now, week):
    assert last_complete_week(now).name == week
    assert parse_week(week) == last_complete_week(now) and isinstance(parse_week(week), Week)


@pytest.mark.parametrize("text", ["2026-47", "2026-W54", "W47", "2026-W00"])
def test_weeks_that_are_not_iso_weeks_are_refused(text):
    with pytest.raises(ValueError, match=r"2026-W47|is not a week"):
        parse_week(text)
