"""Cost per 1 000 inferences and annotator agreement end to end, on PostgreSQL and SQLite.

Predictions go through the SDK and labels over HTTP to a real server; the evaluate job computes
the hour states and windows; the metric history (GET /v1/models/{model}/metrics) and /metrics
are compared with docs/quality.md's worked example (cost) and with krippendorff, statsmodels and
scikit-learn (agreement). A late annotation recomputes its hour: its figures stay the oracles'.
"""

from __future__ import annotations

import math
import subprocess
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import CostPrices
from monitor.sdk import Client, Resources
from monitor.server.jobs import run_once
from tests.slo.golden import require_promtool

pytestmark = pytest.mark.slow  # the evaluation pipeline end to end on both databases

CLASSES = ["cat", "dog", "fox", "owl"]
NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
PAST = NOW.replace(minute=0) - timedelta(hours=2)  # the evaluated hour
#: docs/quality.md's worked example: cpu at 0.10 / h, a T4 at 0.60 / h, 0.05 per 1 000 requests
PRICES = CostPrices(device_hour=(("cpu", 0.10), ("NVIDIA T4", 0.60)), per_1k_requests=0.05)
P = np.array([0.7, 0.1, 0.1, 0.1], dtype=np.float32)


def sdk(api: Any, model: str, version: str, tmp_path: Any) -> Client:
    return Client(api.url, api_key=api.admin_key, model=model, version=version, classes=len(CLASSES),
                  spool_dir=tmp_path / f"spool-{version}", flush_interval=0.02, exit_timeout=0)  # fmt: skip


def at(minute: float) -> datetime:
    return PAST + timedelta(minutes=minute)


def evaluate(api: Any, model: str) -> str:
    (outcome,) = run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model], jobs=["evaluate"])
    assert outcome.status == "ok", outcome.detail
    return outcome.detail


def history(client: Any, model: str, metric: str, *, version: str = "v1", cohort: str = "", cls: str = "") -> dict:
    """The 1h point of ``metric`` for PAST from the metric history."""
    body = client.get(
        f"/v1/models/{model}/metrics",
        params={"window": "1h", "version": version, "cohort": cohort, "metric": metric, "class": cls,
                "since": (PAST - timedelta(hours=1)).isoformat(), "until": NOW.isoformat()},
    ).json()  # fmt: skip
    (point,) = [p for p in body["series"] if p["window_start"] == PAST.isoformat().replace("+00:00", "Z")]
    return point


def scrape(client: Any) -> tuple[str, dict[tuple, float]]:
    text = client.get("/metrics").text
    values = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in text_string_to_metric_families(text) for s in f.samples
    }
    return text, values


def assert_promtool_reads(text: str) -> None:
    check = subprocess.run([require_promtool(), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert "error" not in (check.stdout + check.stderr).lower(), check.stdout + check.stderr


# --------------------------------------------------------------------------------------------
# cost


def test_two_versions_on_different_devices_cost_what_the_docs_say(make_api, model_name, tmp_path):
    """v1: four calls on a CPU, batch 1, of 20, 30, 25 and 45 ms; v2: two calls on a T4, batch 8,
    of 40 and 56 ms (16 predictions). docs/quality.md: 0.0508333 and 0.00725 per 1 000. A v2
    prediction on an unpriced device and one without a latency are counted apart, not priced."""
    api = make_api(cohort_keys=("camera",), clock=lambda: NOW, costs=PRICES)
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES})
    v1, v2 = sdk(api, model_name, "v1", tmp_path), sdk(api, model_name, "v2", tmp_path)
    cpu = Resources(device="cpu", batch_size=1)
    for i, ms in enumerate((20.0, 30.0, 25.0, 45.0)):
        v1.log_classification(P, latency_ms=ms, resources=cpu, timestamp=at(i), cohort={"camera": "cam-a"})
    t4 = Resources(device="NVIDIA T4", batch_size=8)
    for call, ms in enumerate((40.0, 56.0)):
        for _ in range(8):  # one call, eight predictions sharing its latency
            v2.log_classification(P, latency_ms=ms, resources=t4, timestamp=at(10 + call), cohort={"camera": "cam-b"})
    v2.log_classification(P, latency_ms=12.0, resources={"device": "Google TPU v5e"}, timestamp=at(20))  # unpriced
    v2.log_classification(P, resources=t4, timestamp=at(21))  # unmetered
    for client in (v1, v2):
        assert client.flush(20)
        client.close()

    assert evaluate(api, model_name).startswith("1 dirty hours recomputed")
    # by hand, the docs' formula: P_d x device-seconds / 3600 + F x requests / 1000, per 1 000 predictions
    want_v1 = 1000 * (0.10 * 0.120 / 3600 + 0.05 * 4 / 1000) / 4
    want_v2 = 1000 * (0.60 * (8 * 0.040 / 8 + 8 * 0.056 / 8) / 3600 + 0.05 * 2 / 1000) / 16
    assert want_v1 == pytest.approx(0.0508333333, rel=1e-9) and want_v2 == pytest.approx(0.00725, rel=1e-12)
    with api.admin() as c:
        got_v1 = history(c, model_name, "cost_per_1k", version="v1")
        got_v2 = history(c, model_name, "cost_per_1k", version="v2")
        cam = history(c, model_name, "cost_per_1k", version="v2", cohort="camera:cam-b")
        text, metrics = scrape(c)
    assert (got_v1["value"], got_v1["sample_count"]) == (pytest.approx(want_v1, rel=1e-12), 4)
    assert (got_v2["value"], got_v2["sample_count"]) == (pytest.approx(want_v2, rel=1e-12), 16)
    assert (cam["value"], cam["sample_count"]) == (pytest.approx(want_v2, rel=1e-12), 16)
    for version, want in (("v1", want_v1), ("v2", want_v2)):
        key = ("cvmon_cost_per_1k_inferences",
               (("camera", ""), ("model", model_name), ("version", version), ("window", "1d")))  # fmt: skip
        assert metrics[key] == pytest.approx(want, rel=1e-12)
    assert_promtool_reads(text)


def test_without_prices_there_is_no_cost(make_api, model_name, tmp_path):
    api = make_api(clock=lambda: NOW)
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES})
    v1 = sdk(api, model_name, "v1", tmp_path)
    v1.log_classification(P, latency_ms=20.0, resources={"device": "cpu"}, timestamp=at(1))
    assert v1.flush(20)
    v1.close()
    evaluate(api, model_name)
    with api.admin() as c:
        body = c.get(f"/v1/models/{model_name}/metrics", params={"window": "1d", "metric": "cost_per_1k"}).json()
        _, metrics = scrape(c)
    assert body["latest"] == []
    assert not [k for k in metrics if k[0] == "cvmon_cost_per_1k_inferences" and ("model", model_name) in k[1]]


# --------------------------------------------------------------------------------------------
# agreement


#: Annotators of the agreement sample, and how often each says the true class.
SKILL = {"alice": 0.9, "bob": 0.75, "carol": 0.6}


def seeded_annotations(seed: int) -> tuple[list[dict], list[tuple[str, str, int, bool]]]:
    """60 cam-a predictions labelled by alice, bob and carol (15 of them audited by "lead"), 30
    cam-b predictions labelled by alice alone, 10 cam-b predictions not yet labelled.
    Returns the prediction records and the annotations (prediction, annotator, class, audit)."""
    rng = np.random.default_rng(seed)
    weights = np.array([0.4, 0.3, 0.2, 0.1])
    predictions, annotations = [], []
    for i in range(100):
        camera = "cam-a" if i < 60 else "cam-b"
        pid = f"p{i:03d}"
        predictions.append({"prediction_id": pid, "camera": camera, "minute": i * 0.5})
        if i >= 90:
            continue
        true = int(rng.choice(4, p=weights))
        for who in SKILL if camera == "cam-a" else ("alice",):
            said = true if rng.random() < SKILL[who] else int(rng.integers(4))
            annotations.append((pid, who, said, False))
        if i < 60 and i % 4 == 0:
            annotations.append((pid, "lead", true, True))
    return predictions, annotations


def ground_truth(model: str, annotations: list[tuple[str, str, int, bool]], minute: int) -> list[dict]:
    return [
        {"prediction_id": pid, "model": model, "label": CLASSES[label], "annotator": who, "audit": audit,
         "timestamp": (NOW - timedelta(minutes=minute)).isoformat()}
        for pid, who, label, audit in annotations
    ]  # fmt: skip


def oracle(annotations: list[tuple[str, str, int, bool]], items: list[str]) -> dict[str, Any]:
    """The reference figures of the non-audit annotations of ``items``."""
    import krippendorff
    from sklearn.metrics import accuracy_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    mine = [a for a in annotations if a[0] in set(items) and not a[3]]
    names = sorted({who for _, who, _, _ in mine})
    matrix = np.full((len(names), len(items)), np.nan)
    for pid, who, label, _ in mine:
        matrix[names.index(who), items.index(pid)] = label
    by_item: dict[str, list[int]] = defaultdict(list)
    for pid, _, label, _ in mine:
        by_item[pid].append(label)
    pairable = {pid: labels for pid, labels in by_item.items() if len(labels) >= 2}
    # percent agreement (Krippendorff's observed agreement) and specific agreement, by hand
    n = sum(len(v) for v in pairable.values())
    agreeing: Counter[int] = Counter()
    values: Counter[int] = Counter()
    disputed: Counter[int] = Counter()
    for labels in pairable.values():
        counts = Counter(labels)
        for c, k in counts.items():
            agreeing[c] += k * (k - 1) / (len(labels) - 1)
            values[c] += k
            disputed[c] += len(counts) > 1
    sizes = {len(v) for v in pairable.values()}
    fleiss = None
    if len(sizes) == 1:
        table, _ = aggregate_raters(np.array([labels for labels in pairable.values()]), n_cat=4)
        fleiss = float(fleiss_kappa(table, method="fleiss"))
    audits = {pid: label for pid, _, label, audit in annotations if audit and pid in set(items)}
    accuracy = {}
    for who in names:
        checked = [(label, audits[pid]) for pid, w, label, audit in mine if w == who and pid in audits]
        if checked:
            accuracy[who] = (accuracy_score([b for _, b in checked], [a for a, _ in checked]), len(checked))
    return {
        "items": len(pairable),
        "alpha": float(krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")),
        "agreement": sum(agreeing.values()) / n,
        "fleiss": fleiss,
        "specific": {c: agreeing[c] / values[c] for c in values},
        "disputed": {c: disputed[c] for c in values},
        "disputed_items": sum(len(set(v)) > 1 for v in pairable.values()),
        "accuracy": accuracy,
    }


def assert_history_is_the_oracle(c: Any, model: str, want: dict[str, Any]) -> None:
    tol = 1e-9
    alpha = history(c, model, "krippendorff_alpha")
    assert (alpha["value"], alpha["sample_count"]) == (pytest.approx(want["alpha"], abs=tol), want["items"])
    assert history(c, model, "label_agreement")["value"] == pytest.approx(want["agreement"], abs=tol)
    fleiss = history(c, model, "fleiss_kappa")["value"]
    assert fleiss is None if want["fleiss"] is None else fleiss == pytest.approx(want["fleiss"], abs=tol)
    assert history(c, model, "disputed_items")["value"] == want["disputed_items"]
    for k, value in want["specific"].items():
        assert history(c, model, "specific_agreement", cls=CLASSES[k])["value"] == pytest.approx(value, abs=tol)
        assert history(c, model, "disputed_items", cls=CLASSES[k])["value"] == want["disputed"][k]
    for who, (value, n) in want["accuracy"].items():
        got = history(c, model, "annotator_accuracy", cls=who)
        assert (got["value"], got["sample_count"]) == (pytest.approx(value, abs=tol), n)


def annotated_model(make_api: Any, model: str, tmp_path: Any) -> tuple[Any, list[dict], list[tuple[str, str, int, bool]]]:
    """A model with the seeded predictions (SDK) and annotations (HTTP), evaluated once."""
    api = make_api(cohort_keys=("camera",), clock=lambda: NOW)
    predictions, annotations = seeded_annotations(seed=11)
    with api.admin() as c:
        c.put(f"/v1/models/{model}", json={"task": "classification", "classes": CLASSES})
    mon = sdk(api, model, "v1", tmp_path)
    for p in predictions:
        mon.log_classification(P, latency_ms=5.0, prediction_id=p["prediction_id"], timestamp=at(p["minute"]),
                               cohort={"camera": p["camera"]})  # fmt: skip
    assert mon.flush(20)
    mon.close()
    with api.admin() as c:
        body = c.post("/v1/ground-truth", json={"records": ground_truth(model, annotations, 30)}).json()
    assert body["accepted"] == len(annotations) and not body["rejected"], body
    assert evaluate(api, model).startswith("1 dirty hours recomputed")
    return api, predictions, annotations


def test_three_annotators_give_the_reference_figures(make_api, model_name, tmp_path):
    api, predictions, annotations = annotated_model(make_api, model_name, tmp_path)
    items = [p["prediction_id"] for p in predictions]
    want = oracle(annotations, items)
    assert want["items"] == 60 and want["fleiss"] is not None and len(want["accuracy"]) == 3
    assert 0.2 < want["alpha"] < 0.8  # the seeded disagreement is neither none nor total
    with api.admin() as c:
        assert_history_is_the_oracle(c, model_name, want)
        # the biased-sample check: the agreement sample is cam-a's, cam-b has none of it
        whole = history(c, model_name, "multi_annotated_coverage")
        cam_a = history(c, model_name, "multi_annotated_coverage", cohort="camera:cam-a")
        cam_b = history(c, model_name, "multi_annotated_coverage", cohort="camera:cam-b")
        assert (whole["value"], whole["sample_count"]) == (pytest.approx(60 / 100), 100)
        assert (cam_a["value"], cam_b["value"], cam_b["sample_count"]) == (1.0, 0.0, 40)
        # a cohort's agreement is its own items'
        cam_alpha = history(c, model_name, "krippendorff_alpha", cohort="camera:cam-a")["value"]
        assert cam_alpha == pytest.approx(oracle(annotations, items[:60])["alpha"], abs=1e-9)
        text, metrics = scrape(c)
    base = (("model", model_name), ("version", "v1"), ("window", "1d"))
    assert metrics[("cvmon_label_krippendorff_alpha", (("camera", ""), *base))] == pytest.approx(want["alpha"], abs=1e-9)
    assert metrics[("cvmon_label_agreement_ratio", (("camera", ""), *base))] == pytest.approx(want["agreement"], abs=1e-9)
    assert metrics[("cvmon_label_multi_annotated_coverage_ratio", (("camera", "cam-b"), *base))] == 0.0
    assert metrics[("cvmon_label_multi_annotated_coverage_ratio", (("camera", "cam-a"), *base))] == 1.0
    assert_promtool_reads(text)


def test_a_late_annotation_recomputes_its_hour(make_api, model_name, tmp_path):
    """An annotation joining an item's annotations changes the item's weight in every figure:
    its hour is recomputed (an increment would count the item twice). A prediction's first
    annotation, which brings its first label, goes through the label increment, exactly."""
    api, predictions, annotations = annotated_model(make_api, model_name, tmp_path)
    items = [p["prediction_id"] for p in predictions]
    rng = np.random.default_rng(5)
    # dave repeats the label the metrics use (the newest: carol's, annotators tie-break by name)
    # on ten unaudited cam-a items: no label changes, yet every agreement figure does
    unaudited = [pid for i, pid in enumerate(items[:60]) if i % 4]
    late = [(pid, "dave", next(a[2] for a in annotations if a[:2] == (pid, "carol")), False) for pid in unaudited[:10]]
    with api.admin() as c:
        assert c.post("/v1/ground-truth", json={"records": ground_truth(model_name, late, 10)}).json()["accepted"] == 10
    assert evaluate(api, model_name).startswith("1 dirty hours recomputed, late labels merged into 0 hours")
    annotations += late
    want = oracle(annotations, items)
    assert want["fleiss"] is None  # items of 3 and of 4 annotations: Fleiss' kappa is undefined
    with api.admin() as c:
        assert_history_is_the_oracle(c, model_name, want)
    # and ten more that disagree with it
    late = [(pid, "dave", int(rng.integers(4)), False) for pid in unaudited[10:20]]
    with api.admin() as c:
        assert c.post("/v1/ground-truth", json={"records": ground_truth(model_name, late, 9)}).json()["accepted"] == 10
    assert evaluate(api, model_name).startswith("1 dirty hours recomputed")
    annotations += late
    with api.admin() as c:
        assert_history_is_the_oracle(c, model_name, oracle(annotations, items))

    # first annotations of the ten unlabelled cam-b predictions, half of them audited in the same
    # batch: first labels, merged as increments, which bring bob's audited items along
    first = [(pid, "bob", int(rng.integers(4)), False) for pid in items[90:]]
    audits = [(pid, "lead", (label + k % 2) % 4, True) for k, (pid, _, label, _) in enumerate(first[:5])]
    with api.admin() as c:
        body = c.post("/v1/ground-truth", json={"records": ground_truth(model_name, first + audits, 8)}).json()
        assert body["accepted"] == 15
    assert evaluate(api, model_name).startswith("0 dirty hours recomputed, late labels merged into 1 hours")
    annotations += first + audits
    with api.admin() as c:
        assert_history_is_the_oracle(c, model_name, oracle(annotations, items))  # single labels: not pairable
        assert history(c, model_name, "labelled")["value"] == 100
    # and their second annotations: their items become pairable, the hour is recomputed
    second = [(pid, "carol", label if k % 3 else (label + 1) % 4, False) for k, (pid, _, label, _) in enumerate(first)]
    with api.admin() as c:
        assert c.post("/v1/ground-truth", json={"records": ground_truth(model_name, second, 6)}).json()["accepted"] == 10
    assert evaluate(api, model_name).startswith("1 dirty hours recomputed")
    annotations += second
    want = oracle(annotations, items)
    assert want["items"] == 70
    with api.admin() as c:
        assert_history_is_the_oracle(c, model_name, want)
        cam_b = history(c, model_name, "multi_annotated_coverage", cohort="camera:cam-b")
        assert cam_b["value"] == pytest.approx(10 / 40)
        _, metrics = scrape(c)
    key = ("cvmon_label_krippendorff_alpha", (("camera", ""), ("model", model_name), ("version", "v1"), ("window", "1d")))
    assert metrics[key] == pytest.approx(want["alpha"], abs=1e-9) and not math.isnan(metrics[key])
