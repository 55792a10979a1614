"""A real scrape of a running cvmon passes ``promtool check metrics``, on PostgreSQL and SQLite.

The page holds every kind of series cvmon serves: model quality and latency quantiles from the
evaluate job, drift scores, p-values and effect sizes from the drift job, SLO counters, budgets
and burn rates, label latency, job runs and the service's own counters. promtool's lint (metric
types against label names and suffixes, HELP, duplicate families) must exit 0 -- its exit status
is the assertion, not the absence of a word in its output.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.server.jobs import run_once
from monitor.server.slo.spec import load_slos
from monitor.wire import encode_array
from tests.slo.golden import require_promtool

pytestmark = pytest.mark.slow  # ~1 500 predictions with embeddings, the evaluate and drift jobs

NOW = datetime(2026, 11, 20, 15, 10, tzinfo=UTC)
HOURS = [NOW.replace(minute=0) - timedelta(hours=h) for h in (4, 3, 2, 1)]
CLASSES = ["cat", "dog", "bird"]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def records(model: str, rng: np.random.Generator) -> tuple[list[dict], list[dict]]:
    """Four hours of two cameras: Gaussian embeddings (camera b's shifted in the last two hours),
    Dirichlet probabilities, latencies around 30 ms, every prediction labelled 20 minutes later."""
    preds, truth = [], []
    for h, hour in enumerate(HOURS):
        for camera in ("a", "b"):
            for i in range(180):
                pid = f"{camera}-{h}-{i}"
                ts = hour + timedelta(seconds=float(rng.uniform(0, 3500)))
                shift = 1.5 if camera == "b" and h >= 2 else 0.0
                probs = rng.dirichlet([4.0, 1.0, 1.0]).astype(np.float32)
                preds.append({
                    "prediction_id": pid, "model": model, "model_version": "v1", "timestamp": ts.isoformat(),
                    "probabilities": encode_array(probs), "latency_ms": float(rng.gamma(9.0, 3.5)),
                    "embedding": encode_array((rng.standard_normal(8) + shift).astype(np.float32)),
                    "cohort": {"camera": camera},
                })  # fmt: skip
                label = CLASSES[int(rng.choice(3, p=probs / probs.sum()))]
                truth.append({"prediction_id": pid, "model": model, "label": label,
                              "timestamp": (ts + timedelta(minutes=20)).isoformat()})  # fmt: skip
    return preds, truth


def test_a_real_scrape_passes_promtool_check_metrics(make_api, model_name):
    slos = load_slos(f"""
slos:
  - {{name: lat, model: {model_name}, sli: latency, objective: 0.99, window: 30d, threshold: 0.05}}
  - {{name: acc, model: {model_name}, sli: accuracy, objective: 0.95, window: 7d}}
  - {{name: lat-1d, model: {model_name}, sli: latency, objective: 0.99, window: 1d, threshold: 0.05}}
""")
    clock = Clock(NOW)
    api = make_api(
        clock=clock, slos=slos, cohort_keys=("camera",), drift_windows=("1h",), drift_min_samples=50,
        drift_reference_size=300, drift_detectors=("mmd:embedding", "pca_ks:embedding", "ks:confidence",
                                                   "chi_square:class_mix", "psi:class_mix"),
    )  # fmt: skip
    with api.admin() as c:
        assert c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES}).status_code in (200, 201)
        preds, truth = records(model_name, np.random.default_rng(5))
        for k in range(0, len(preds), 500):
            assert c.post("/v1/predictions", json={"records": preds[k : k + 500]}).json()["accepted"] == len(preds[k : k + 500])
        for k in range(0, len(truth), 1000):
            assert c.post("/v1/ground-truth", json={"records": truth[k : k + 1000]}).json()["accepted"] == len(truth[k : k + 1000])
    for _ in range(2):  # the drift job fits the reference on its first run, scores on the next
        outcomes = run_once(api.db.engine, api.settings, clock=clock, models=[model_name])
        assert all(o.status == "ok" for o in outcomes), outcomes

    with api.client(api.create_key(["metrics"])) as c:
        page = c.get("/metrics")
    assert page.status_code == 200
    families = {f.name: f for f in text_string_to_metric_families(page.text)}
    for name, kind in [
        ("cvmon_inference_latency_seconds", "summary"), ("cvmon_label_latency_seconds", "summary"),
        ("cvmon_accuracy_ratio", "gauge"), ("cvmon_drift_score", "gauge"), ("cvmon_drift_p_value", "gauge"),
        ("cvmon_drift_detected", "gauge"), ("cvmon_drift_effect_size", "gauge"), ("cvmon_drift_min_effect", "gauge"),
        ("cvmon_slo_burn_rate", "gauge"),
        ("cvmon_slo_error_budget_remaining_ratio", "gauge"), ("cvmon_slo_events", "counter"),
        ("cvmon_predictions", "counter"), ("cvmon_job_duration_seconds", "gauge"),
        ("cvmon_http_request_duration_seconds", "histogram"),
    ]:  # fmt: skip
        assert name in families and families[name].type == kind, name
    quantiles = {s.labels["quantile"] for s in families["cvmon_inference_latency_seconds"].samples}
    assert quantiles == {"0.5", "0.95", "0.99"}
    burn = families["cvmon_slo_burn_rate"].samples
    assert {(s.labels["model"], s.labels["version"]) for s in burn} == {(model_name, "v1")}
    drifted = {s.labels["camera"] for s in families["cvmon_drift_detected"].samples if s.value == 1.0}
    assert "b" in drifted and "a" not in drifted  # the shifted camera (and the version it is half of)

    check = subprocess.run([require_promtool(), "check", "metrics"], input=page.content, capture_output=True)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
