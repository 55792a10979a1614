"""When automation events are emitted: drift streaks, retraining, pages for a canary's candidate,
weekly reports (services/triggers.py and its hooks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from monitor.server.rollout_config import AutomationConfig
from monitor.server.services import automation as auto
from monitor.server.services import triggers
from monitor.server.settings import Settings
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction

NOW = datetime(2026, 12, 2, 12, 5, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _points(db: Any, model: str, rows: list[tuple[str, datetime, str, str, float]]) -> None:
    with write_transaction(db.engine) as conn:
        conn.execute(sa.insert(t.metric_points), [
            {"model": model, "window": "1h", "window_start": start, "window_end": start + HOUR, "version": version,
             "cohort_key": "", "cohort_value": "", "metric": metric, "class": cls, "value": value, "sample_count": 500,
             "label_coverage": None, "computed_at": NOW}
            for version, start, metric, cls, value in rows
        ])  # fmt: skip


def _kinds(db: Any, model: str) -> list[str]:
    with db.engine.connect() as conn:
        return sorted(e.kind for e in auto.list_events(conn, model))


def test_drift_in_consecutive_windows_and_a_quality_drop(db, model_name):
    settings = Settings(database_url=db.url, automation=AutomationConfig(drift_windows=3, retraining_drop=0.02))
    last = NOW.replace(minute=0) - HOUR
    hours = [last - i * HOUR for i in range(30)][::-1]
    rows = []
    for h in hours:
        drifting = h > last - 3 * HOUR  # the last three windows
        rows.append(("v1", h, "drift_detected", "ks:confidence", 1.0 if drifting else 0.0))
        rows.append(("v1", h, "drift_detected", "mmd:embedding", 0.0))
        rows.append(("v1", h, "estimated_accuracy", "", 0.85 if drifting else 0.90))
        rows.append(("v2", h, "drift_detected", "ks:confidence", 1.0 if h == last else 0.0))  # one window only
    _points(db, model_name, rows)
    with write_transaction(db.engine) as conn:
        emitted = triggers.drift_events(conn, settings, model=model_name, now=NOW)
    assert len(emitted) == 2
    assert _kinds(db, model_name) == ["drift.persistent", "retraining.requested"]
    with db.engine.connect() as conn:
        events = {e.kind: e.payload["data"] for e in auto.list_events(conn, model_name)}
    assert events["drift.persistent"]["windows"] == 3 and events["drift.persistent"]["detectors"] == ["ks:confidence"]
    assert events["retraining.requested"]["accuracy_source"] == "estimated"
    assert abs(events["retraining.requested"]["accuracy_drop"] - 0.05) < 1e-9
    # the next run, and the next window of the same streak: nothing new
    _points(db, model_name, [("v1", last + HOUR, "drift_detected", "ks:confidence", 1.0)])
    with write_transaction(db.engine) as conn:
        assert triggers.drift_events(conn, settings, model=model_name, now=NOW + HOUR) == []


def test_no_retraining_request_without_a_quality_drop(db, model_name):
    settings = Settings(database_url=db.url)
    last = NOW.replace(minute=0) - HOUR
    rows = []
    for i in range(30):
        h = last - i * HOUR
        rows.append(("v1", h, "drift_detected", "psi:class_mix", 1.0 if i < 4 else 0.0))
        rows.append(("v1", h, "accuracy", "", 0.91))
    _points(db, model_name, rows)
    with write_transaction(db.engine) as conn:
        triggers.drift_events(conn, settings, model=model_name, now=NOW)
    assert _kinds(db, model_name) == ["drift.persistent"]


def test_a_page_for_a_canary_candidate_requests_a_rollback(db, model_name):
    settings = Settings(database_url=db.url)
    with write_transaction(db.engine) as conn:
        conn.execute(sa.insert(t.canary_decisions), [
            {"model": model_name, "baseline": "v3", "candidate": "v4", "metric": "overall", "decision": 0, "gating": 1,
             "samples": 10, "labels": 0, "since": NOW - HOUR, "evaluated_at": NOW - timedelta(minutes=5)},
        ])  # fmt: skip
        fired = NOW - timedelta(minutes=2)
        for version, severity in (("v4", "page"), ("v3", "page"), ("v4", "ticket")):
            triggers.slo_alert(conn, settings, model=model_name, slo="lat", version=version, severity=severity,
                               first_fired=fired, now=NOW)  # fmt: skip
        # the same incident again (a repeat notification): nothing new
        assert triggers.slo_alert(conn, settings, model=model_name, slo="lat", version="v4", severity="page",
                                  first_fired=fired, now=NOW) == []  # fmt: skip
    assert _kinds(db, model_name) == ["rollback.requested", "slo.page", "slo.page", "slo.ticket"]
    with db.engine.connect() as conn:
        (rollback,) = [e for e in auto.list_events(conn, model_name) if e.kind == "rollback.requested"]
    assert rollback.payload["data"]["candidate"] == "v4" and rollback.payload["data"]["baseline"] == "v3"


def test_the_report_job_emits_report_ready(db, model_name):
    from monitor.server.jobs.report import report

    with db.engine.begin() as conn:
        conn.execute(sa.insert(t.models).values(model=model_name, task="classification", classes=["a", "b"],
                                                operating_threshold=0.5, created_at=NOW, updated_at=NOW))  # fmt: skip
    settings = Settings(database_url=db.url)
    report(db.engine, model_name, settings=settings, clock=lambda: NOW)
    report(db.engine, model_name, settings=settings, clock=lambda: NOW)  # exists: no second event
    with db.engine.connect() as conn:
        (event,) = auto.list_events(conn, model_name)
    assert event.kind == "report.ready" and event.payload["data"]["week"] == "2026-W48"
