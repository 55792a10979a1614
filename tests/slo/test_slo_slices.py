"""The ``slo`` job on PostgreSQL and SQLite: time-slice events from evaluated hours, counted once,
and folding old per-minute counts without changing any sum the exporter or notifier reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.server.jobs import run_once
from monitor.server.jobs.slo import slo as slo_job
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.slo.counts import EPOCH, compact, read_counts
from monitor.server.slo.spec import load_slos
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from tests.slo.test_slo_events import counts

H = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)  # the hour in progress
NOW = H + timedelta(minutes=10)
HOUR = timedelta(hours=1)
TICKETS = "alerting: {alerts: [{severity: ticket, long_window: 1d, short_window: 2h, budget_fraction: 0.1}]}"


def settings_for(model: str) -> Settings:
    text = f"""
slos:
  - {{name: ece, model: {model}, sli: ece, objective: 0.95, window: 30d, threshold: 0.05, {TICKETS}}}
  - {{name: ece-cam3, model: {model}, sli: ece, objective: 0.95, window: 30d, threshold: 0.05,
      cohort: {{camera: cam-3}}, {TICKETS}}}
  - {{name: map, model: {model}, sli: map, objective: 0.95, window: 30d, threshold: 0.45, min_samples: 20, {TICKETS}}}
  - {{name: drift, model: {model}, sli: drift, objective: 0.95, window: 30d, threshold: 0.2, detector: psi, {TICKETS}}}
"""
    return Settings(slos=load_slos(text), cohort_keys=("camera",))


def point(
    model: str, hour: datetime, metric: str, value: float, n: int, *, cls: str = "", cohort: str = ""
) -> dict[str, Any]:
    key, _, value_ = cohort.partition("=")
    return {
        "model": model, "window": "1h", "window_start": hour, "window_end": hour + HOUR, "version": "v1",
        "cohort_key": key, "cohort_value": value_, "metric": metric, "class": cls, "value": value,
        "sample_count": n, "label_coverage": 1.0, "computed_at": hour,
    }  # fmt: skip


def test_time_slices_count_each_complete_hour_once(db, model_name):
    settings = settings_for(model_name)
    m = model_name
    rows = [
        point(m, H - 3 * HOUR, "ece", 0.03, 100),  # good
        point(m, H - 2 * HOUR, "ece", 0.09, 100),  # bad
        point(m, H - 1 * HOUR, "ece", 0.20, 10),  # too few labels (yet)
        point(m, H, "ece", 0.50, 100),  # the hour in progress: not yet
        point(m, H - 30 * HOUR, "ece", 0.01, 100),  # older than a day: never
        point(m, H - 4 * HOUR, "ece", 0.01, 100),  # waits for recomputation (dirty)
        point(m, H - 3 * HOUR, "ece", 0.08, 40, cohort="camera=cam-3"),  # bad, in the cam-3 slice
        point(m, H - 2 * HOUR, "ece", 0.01, 40, cohort="camera=cam-1"),  # another camera
        point(m, H - 3 * HOUR, "map", 0.50, 20),  # good (a lower bound)
        point(m, H - 2 * HOUR, "map", 0.40, 20),  # bad
        point(m, H - 3 * HOUR, "drift_score", 0.10, 200, cls="psi:confidence"),
        point(m, H - 3 * HOUR, "drift_score", 0.30, 200, cls="psi:embedding"),  # the largest psi score: bad
        point(m, H - 2 * HOUR, "drift_score", 0.90, 200, cls="ks:confidence"),  # another detector: not this SLO's
    ]
    with write_transaction(db.engine) as conn:
        register_model(conn, m, "classification", ["cat", "dog"], 0.5, now=NOW)
        conn.execute(sa.insert(t.metric_points), rows)
        conn.execute(sa.insert(t.dirty_hours).values(model=m, hour_start=H - 4 * HOUR, marked_at=NOW))

    detail = slo_job(db.engine, m, settings=settings, clock=lambda: NOW)
    assert detail.startswith("6 time slices counted")
    want = {("ece", "v1"): (2, 1), ("ece-cam3", "v1"): (1, 1), ("map", "v1"): (2, 1), ("drift", "v1"): (1, 1)}
    assert counts(db.engine, m) == want
    # counted at the minute of the run, once
    assert slo_job(db.engine, m, settings=settings, clock=lambda: NOW + timedelta(minutes=1)).startswith("0 time")
    assert counts(db.engine, m) == want
    with db.engine.connect() as conn:
        assert set(conn.execute(sa.select(t.slo_events.c.minute).where(t.slo_events.c.model == m)).scalars()) == {NOW}

    # late labels bring the last hour to 40 samples; the dirty hour is recomputed: both count now
    mp = t.metric_points.c
    with write_transaction(db.engine) as conn:
        conn.execute(
            sa.update(t.metric_points).where(mp.model == m, mp.window_start == H - HOUR).values(sample_count=40)
        )
        conn.execute(sa.delete(t.dirty_hours).where(t.dirty_hours.c.model == m))
    slo_job(db.engine, m, settings=settings, clock=lambda: NOW + timedelta(minutes=2))
    assert counts(db.engine, m)[("ece", "v1")] == (4, 2)


def test_folding_keeps_every_sum(db, model_name):
    (slo,) = load_slos(
        f"slos:\n  - {{name: lat, model: {model_name}, sli: latency, objective: 0.99, window: 30d, threshold: 0.1}}\n"
    )
    now = datetime(2026, 11, 20, 10, 15, 30, tzinfo=UTC)
    minute = now.replace(second=0)

    def row(at: datetime, events: int, bad: int, version: str = "v1") -> dict[str, Any]:
        return {
            "model": model_name,
            "slo": "lat",
            "version": version,
            "minute": at,
            "events": events,
            "bad": bad,
        }

    rows = [
        row(minute, 5, 1), row(minute - timedelta(minutes=4), 3, 0), row(minute - timedelta(minutes=5), 7, 7),
        row(minute - timedelta(hours=2), 10, 1),
        # older than the longest alert window (3d) plus an hour: fold into hours
        *(row(minute - timedelta(days=4, minutes=k), 2, k % 2) for k in range(0, 50, 7)),
        row(minute - timedelta(days=4), 1, 1, version="v2"),
        # older than the SLO window plus a day: fold into the running total
        *(row(minute - timedelta(days=40, minutes=k), 4, 1) for k in range(5)),
    ]  # fmt: skip
    with write_transaction(db.engine) as conn:
        conn.execute(sa.insert(t.slo_events), rows)
    with db.engine.connect() as conn:
        before = read_counts(conn, [slo], now)["lat"]
    assert before.window(300).events == 8  # the 5m window: this minute and the 4 before it
    assert before.window(3600).events == 15

    pg = db.is_pg
    with write_transaction(db.engine) as conn:
        removed = compact(conn, slo, now, pg=pg)
    assert removed == 10  # 9 minutes into 3 hour rows (v1: 2, v2: 1), 5 old minutes into 1 total row
    with db.engine.connect() as conn:
        after = read_counts(conn, [slo], now)["lat"]
        minutes = list(
            conn.execute(sa.select(t.slo_events.c.minute).where(t.slo_events.c.model == model_name)).scalars()
        )
    assert after == before
    assert EPOCH in minutes and all(m.minute == 0 for m in minutes if m < now - timedelta(days=3))
    with write_transaction(db.engine) as conn:
        assert compact(conn, slo, now, pg=pg) == 0


def test_slo_jobs_run_only_for_models_with_slos(db, model_name):
    other = model_name + "-other"
    with write_transaction(db.engine) as conn:
        for name in (model_name, other):
            register_model(conn, name, "classification", ["cat", "dog"], 0.5, now=NOW)
    settings = settings_for(model_name)
    outcomes = run_once(db.engine, settings, clock=lambda: NOW, models=[model_name, other])
    assert all(o.status == "ok" for o in outcomes), outcomes
    jobs = {(o.model, o.job): o.detail for o in outcomes}
    assert (model_name, "slo") in jobs and (model_name, "notify") in jobs
    assert (other, "evaluate") in jobs and (other, "slo") not in jobs and (other, "notify") not in jobs
    order = [o.job for o in outcomes if o.model == model_name]
    assert order.index("evaluate") < order.index("slo") < order.index("notify")  # slices need evaluated hours
    assert jobs[(model_name, "notify")] == "notifier not configured"


def test_cost_and_label_quality_slices(db, model_name):
    """cost: an hour is bad when its cost per 1 000 inferences is above the bound (an upper bound,
    samples = priced predictions); label_quality: when its label agreement, or Krippendorff's
    alpha if the SLO says so, is below it (a lower bound, samples = multiply-annotated items)."""
    from monitor.metrics import CostPrices

    m = model_name
    tickets = "alerting: {alerts: [{severity: ticket, long_window: 1d, short_window: 2h, budget_fraction: 0.1}]}"
    settings = Settings(
        slos=load_slos(f"""
slos:
  - {{name: cost, model: {m}, sli: cost, objective: 0.95, window: 30d, threshold: 0.01}}
  - {{name: agree, model: {m}, sli: label_quality, objective: 0.9, window: 30d, threshold: 0.9, min_samples: 10, {tickets}}}
  - {{name: alpha, model: {m}, sli: label_quality, metric: krippendorff_alpha, objective: 0.9, window: 30d,
      threshold: 0.667, min_samples: 10, {tickets}}}
"""),
        costs=CostPrices((("cpu", 0.1),)),
    )
    rows = [
        point(m, H - 3 * HOUR, "cost_per_1k", 0.008, 500),  # good
        point(m, H - 2 * HOUR, "cost_per_1k", 0.012, 500),  # bad: above 0.01
        point(m, H - 1 * HOUR, "cost_per_1k", 0.050, 12),  # too few priced predictions
        point(m, H - 3 * HOUR, "label_agreement", 0.95, 40),  # good
        point(m, H - 3 * HOUR, "krippendorff_alpha", 0.60, 40),  # bad for alpha: below 0.667
        point(m, H - 2 * HOUR, "label_agreement", 0.85, 40),  # bad
        point(m, H - 2 * HOUR, "krippendorff_alpha", 0.70, 40),  # good
        point(m, H - 1 * HOUR, "label_agreement", 0.10, 5),  # too few multiply-annotated items
    ]
    with write_transaction(db.engine) as conn:
        register_model(conn, m, "classification", ["cat", "dog"], 0.5, now=NOW)
        conn.execute(sa.insert(t.metric_points), rows)
    detail = slo_job(db.engine, m, settings=settings, clock=lambda: NOW)
    assert detail.startswith("6 time slices counted"), detail
    assert counts(db.engine, m) == {("cost", "v1"): (2, 1), ("agree", "v1"): (2, 1), ("alpha", "v1"): (2, 1)}


def test_a_cost_slo_needs_prices():
    from monitor.errors import ConfigError

    slos = load_slos("slos:\n  - {name: c, model: m, sli: cost, objective: 0.95, window: 30d, threshold: 0.01}\n")
    with pytest.raises(ConfigError, match="add costs: with device-hour prices"):
        Settings(slos=slos).validate()
