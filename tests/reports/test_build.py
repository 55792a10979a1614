"""The report data builder on both databases: data ingested through the API, evaluated by the
real jobs, compared with the metrics engine run by hand on the same rows."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from monitor.metrics import classification_metrics, probability_states
from monitor.server.jobs import run_once
from monitor.server.reports.build import build_report_data
from monitor.server.reports.data import ReportError
from monitor.server.slo.spec import load_slos
from monitor.server.store import tables as t
from monitor.server.store.bulk import bulk_insert
from monitor.server.store.engine import write_transaction
from tests.reports import synth as s

pytestmark = pytest.mark.slow  # weekly reports built end to end on generated weeks


def engine_metrics(posted, rows):
    labels, probs = posted.arrays(rows)
    cls, _ = probability_states(labels, probs, classwise=False, samples=False)
    return classification_metrics(cls)


@pytest.fixture
def evaluated(make_api, model_name):
    """Two weeks posted and evaluated; returns (api, posted, clock)."""
    clock = s.SimClock(s.PREVIOUS_START)
    api = make_api(clock=clock, cohort_keys=("camera",), slos=load_slos(s.SLO_YAML.format(model=model_name)))
    posted = s.synth(model_name)
    with api.admin() as client:
        s.post(client, clock, model_name, posted)
    s.evaluate(api.db.engine, api.settings, clock, model_name)
    return api, posted, clock


def test_week_totals_classes_and_confusion_match_the_metrics_engine(evaluated, model_name):
    api, posted, clock = evaluated
    data = build_report_data(api.db.engine, model_name, s.WEEK_START, settings=api.settings, clock=clock)
    this_week = posted.rows(start=s.WEEK_START, end=s.WEEK_START + timedelta(days=7))
    last_week = posted.rows(start=s.PREVIOUS_START, end=s.WEEK_START)
    now, before = engine_metrics(posted, this_week), engine_metrics(posted, last_week)

    assert (data.week, data.period_start, data.period_end) == (
        "2026-W47",
        s.WEEK_START,
        s.WEEK_START + timedelta(days=7),
    )
    assert data.overall.current == pytest.approx(now.accuracy, abs=1e-12) and data.overall.n == len(this_week)
    assert data.overall.previous == pytest.approx(before.accuracy, abs=1e-12) and data.overall.previous_n == len(
        last_week
    )
    for row, a, b in zip(data.classes, now.per_class, before.per_class, strict=True):
        assert (row.recall.current, row.recall.n) == (pytest.approx(a.recall, abs=1e-12), a.support)
        assert (row.precision.previous, row.precision.previous_n) == (
            pytest.approx(b.precision, abs=1e-12),
            b.predicted,
        )
    assert np.array_equal(np.array(data.confusion.counts), now.confusion_matrix)
    assert data.confusion.classes == tuple(s.CLASSES)


def test_versions_cohorts_and_trends_come_from_the_stored_windows(evaluated, model_name):
    api, posted, clock = evaluated
    data = build_report_data(api.db.engine, model_name, s.WEEK_START, settings=api.settings, clock=clock)
    week_end = s.WEEK_START + timedelta(days=7)

    assert [v.version for v in data.versions] == ["v1", "v2"]  # busiest first
    v1, v2 = data.versions
    assert v1.predictions.current == len(posted.rows(start=s.WEEK_START, end=week_end, version="v1"))
    assert v2.predictions.previous is None and v2.first_seen >= s.WEEK_START
    assert v1.latency_p95_ms.current > 0 and v1.label_coverage.current == pytest.approx(1.0)

    cam_b = next(c for c in data.cohorts if (c.version, c.value) == ("v1", "cam-b"))
    want = engine_metrics(posted, posted.rows(start=s.WEEK_START, end=week_end, version="v1", camera="cam-b"))
    assert (
        cam_b.primary.current == pytest.approx(want.accuracy, abs=1e-12)
        and cam_b.primary.n == want.confusion_matrix.sum()
    )
    assert cam_b.primary.delta < -0.3  # the degraded camera

    (trend,) = [series for series in data.quality_trend if series.label == "v1"]
    assert len(trend.points) == 14 and trend.points[0][0] == s.PREVIOUS_START
    tuesday = s.WEEK_START + timedelta(days=1)
    day = engine_metrics(posted, posted.rows(start=tuesday, end=tuesday + timedelta(days=1), version="v1"))
    assert dict(trend.points)[tuesday] == pytest.approx(day.accuracy, abs=1e-12)
    assert len(cam_b.trend) == 14 and cam_b.trend[8] is not None


def test_slo_status_reads_the_counted_events(evaluated, model_name):
    api, posted, clock = evaluated
    data = build_report_data(api.db.engine, model_name, s.WEEK_START, settings=api.settings, clock=clock)
    accuracy = next(x for x in data.slos if x.sli == "accuracy")
    this_week = posted.rows(start=s.WEEK_START, end=s.WEEK_START + timedelta(days=7))
    bad = sum(1 for r in this_week if int(np.argmax(posted.arrays([r])[1][0])) != posted.truth[r["prediction_id"]])
    assert (accuracy.week_events, accuracy.week_bad) == (len(this_week), bad)
    everything = len(posted.records)
    bad_all = bad + sum(
        1
        for r in posted.rows(start=s.PREVIOUS_START, end=s.WEEK_START)
        if int(np.argmax(posted.arrays([r])[1][0])) != posted.truth[r["prediction_id"]]
    )
    assert accuracy.window_events == everything and accuracy.budget_remaining == pytest.approx(
        1 - (bad_all / everything) / 0.05
    )
    assert accuracy.week_burn_rate == pytest.approx((bad / len(this_week)) / 0.05)
    assert data.slo_as_of == s.REPORT_TIME


def test_drift_rows_mark_their_cohort_and_draw_the_version_trend(evaluated, model_name):
    api, _, clock = evaluated
    flagged_from = s.WEEK_START + timedelta(days=1, hours=14)
    with write_transaction(api.db.engine) as conn:
        bulk_insert(conn, t.metric_points, s.drift_rows(model_name, flagged_from=flagged_from))
    settings = api.settings.with_(
        slos=load_slos(
            s.SLO_YAML.format(model=model_name)
            + f"  - {{name: {model_name}-drift, model: {model_name}, sli: drift, objective: 0.95, window: 30d, threshold: 0.2, detector: mmd}}\n"
        )
    )
    data = build_report_data(api.db.engine, model_name, s.WEEK_START, settings=settings, clock=clock)

    assert data.drift_window == "1h"
    (trend,) = data.drift
    assert (trend.label, trend.version, len(trend.points), trend.flagged, trend.threshold) == (
        "mmd:embedding",
        "v1",
        168,
        (),
        0.2,
    )
    cam_b = next(c for c in data.cohorts if (c.version, c.value) == ("v1", "cam-b"))
    (hit,) = cam_b.drift
    assert (hit.detector, hit.feature, hit.first, hit.windows) == ("mmd", "embedding", flagged_from, 168 - 38)
    assert all(not c.drift for c in data.cohorts if c.value != "cam-b")


def test_the_label_free_estimate_of_the_week_weighs_its_days_by_their_samples(evaluated, model_name):
    api, _, clock = evaluated
    rows = [
        {"model": model_name, "window": "1d", "window_start": s.WEEK_START + timedelta(days=d), "window_end": s.WEEK_START + timedelta(days=d + 1),
         "version": "v1", "cohort_key": "", "cohort_value": "", "metric": "estimated_accuracy", "class": "", "value": value,
         "sample_count": n, "label_coverage": None, "computed_at": s.REPORT_TIME}
        for d, value, n in ((0, 0.9, 100), (1, 0.6, 300))
    ]  # fmt: skip
    with write_transaction(api.db.engine) as conn:
        bulk_insert(conn, t.metric_points, rows)
    data = build_report_data(api.db.engine, model_name, s.WEEK_START, settings=api.settings, clock=clock)
    assert data.versions[0].estimated.current == pytest.approx((0.9 * 100 + 0.6 * 300) / 400)
    (estimate, realised) = data.estimate_trend
    assert dict(estimate.points)[s.WEEK_START] == 0.9 and realised.label == "realised accuracy"


def test_an_unknown_model_or_a_week_not_starting_on_monday_is_refused(db, model_name):
    from monitor.server.settings import Settings

    settings = Settings(database_url=db.url)
    with pytest.raises(ReportError, match="no model"):
        build_report_data(db.engine, model_name, s.WEEK_START, settings=settings, clock=lambda: s.REPORT_TIME)
    with pytest.raises(ReportError, match="starts on a Monday"):
        build_report_data(
            db.engine, model_name, s.WEEK_START + timedelta(days=1), settings=settings, clock=lambda: s.REPORT_TIME
        )


def test_cost_per_version_and_the_most_disputed_classes_come_from_the_stored_states(make_api, model_name):
    """Cost per 1 000 by version from the 7d windows, and the week's disputed classes merged from
    the agreement states of every version, equal the docs' formula and a count by hand."""
    from collections import Counter, defaultdict

    from monitor.metrics import CostPrices

    clock = s.SimClock(s.WEEK_START + timedelta(days=2))
    prices = CostPrices(device_hour=(("cpu", 0.10), ("NVIDIA T4", 0.60)), per_1k_requests=0.05)
    api = make_api(clock=clock, cohort_keys=("camera",), costs=prices)
    tuesday = s.WEEK_START + timedelta(days=1, hours=9)
    records, annotations = [], []
    rng = np.random.default_rng(4)
    for i in range(48):
        version = "v1" if i < 16 else "v2"
        resources = {"device": "cpu", "batch_size": 1} if version == "v1" else {"device": "NVIDIA T4", "batch_size": 8}
        latency = 20.0 + i if version == "v1" else 40.0 + 8 * ((i - 16) // 8)  # v2: calls of 8, one latency each
        records.append({"prediction_id": f"q{i}", "model": model_name, "model_version": version, "timestamp": (tuesday + timedelta(minutes=i)).isoformat(),
                        "probabilities": [0.7, 0.1, 0.1, 0.1], "latency_ms": latency, "resources": resources, "cohort": {"camera": "cam-a"}})  # fmt: skip
        true = int(rng.integers(4))
        for who, skill in (("alice", 0.9), ("bob", 0.7), ("carol", 0.5)):
            annotations.append((f"q{i}", who, true if rng.random() < skill else int(rng.integers(4))))
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": s.CLASSES})
        assert c.post("/v1/predictions", json={"records": records}).json()["accepted"] == 48
        body = c.post("/v1/ground-truth", json={"records": [
            {"prediction_id": pid, "model": model_name, "label": s.CLASSES[label], "annotator": who,
             "timestamp": (tuesday + timedelta(hours=2)).isoformat()} for pid, who, label in annotations]}).json()  # fmt: skip
        assert body["accepted"] == len(annotations)
    clock.now = s.REPORT_TIME
    (outcome,) = run_once(api.db.engine, api.settings, clock=clock, models=[model_name], jobs=["evaluate"])
    assert outcome.status == "ok", outcome.detail
    data = build_report_data(api.db.engine, model_name, s.WEEK_START, settings=api.settings, clock=clock)

    by_version = {v.version: v for v in data.versions}
    v1_seconds = sum(20.0 + i for i in range(16)) / 1000
    want_v1 = 1000 * (0.10 * v1_seconds / 3600 + 0.05 * 16 / 1000) / 16
    want_v2 = 1000 * (0.60 * sum(8 * (40.0 + 8 * k) / 8 for k in range(4)) / 1000 / 3600 + 0.05 * 4 / 1000) / 32
    assert data.currency == "USD"
    assert (by_version["v1"].cost_per_1k.current, by_version["v1"].cost_per_1k.n) == (pytest.approx(want_v1, rel=1e-12), 16)
    assert (by_version["v2"].cost_per_1k.current, by_version["v2"].cost_per_1k.n) == (pytest.approx(want_v2, rel=1e-12), 32)

    labels = data.labels
    assert labels is not None and labels.items.current == 48 and labels.items.previous is None
    agree: Counter[int] = Counter()
    values: Counter[int] = Counter()
    disputed: Counter[int] = Counter()
    by_item: dict[str, list[int]] = defaultdict(list)
    for pid, _, label in annotations:
        by_item[pid].append(label)
    for item in by_item.values():
        for c, k in Counter(item).items():
            agree[c] += k * (k - 1) / 2
            values[c] += k
            disputed[c] += len(set(item)) > 1
    want = sorted((c for c in values if disputed[c]), key=lambda c: (agree[c] / values[c], -disputed[c], s.CLASSES[c]))
    assert [d.name for d in labels.most_disputed] == [s.CLASSES[c] for c in want]
    for d in labels.most_disputed:
        c = s.CLASSES.index(d.name)
        assert (d.labels, d.disputed) == (values[c], disputed[c])
        assert d.specific_agreement == pytest.approx(agree[c] / values[c], abs=1e-12)
    assert labels.disputed_items == sum(len(set(v)) > 1 for v in by_item.values())
