"""The evaluation pipeline end to end: ingest over HTTP, run the jobs, read the API and /metrics,
and compare with the metrics engine run by hand on the same rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import (
    calibration_metrics,
    classification_metrics,
    classification_state,
    detection_metrics,
    detection_state,
    probability_states,
)
from monitor.server.jobs import Worker, run_once
from monitor.server.services.decode import image_key
from monitor.server.store import tables as t
from monitor.wire import encode_array

pytestmark = pytest.mark.slow  # the evaluation pipeline end to end on both databases

CLASSES = ["cat", "dog", "fox", "owl"]
NOW = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
HOURS = [NOW.replace(minute=0) - timedelta(hours=h) for h in (4, 3, 2, 1, 0)]


def synth(model: str, n: int, seed: int) -> tuple[list[dict], dict[str, int]]:
    """Predictions over five hours, two versions, two cameras; the true label of each."""
    rng = np.random.default_rng(seed)
    records, truth = [], {}
    for i in range(n):
        hour = HOURS[i % len(HOURS)]
        version = "v1" if i % 3 else "v2"
        camera = "cam-a" if i % 2 else "cam-b"
        label = int(rng.integers(len(CLASSES)))
        logits = rng.normal(size=len(CLASSES)) + (2.0 if camera == "cam-a" else 0.3) * np.eye(len(CLASSES))[label]
        p = np.exp(logits) / np.exp(logits).sum()
        pid = f"{model}-{i}"
        records.append({
            "prediction_id": pid, "model": model, "model_version": version,
            "timestamp": (hour + timedelta(seconds=int(rng.integers(3600)))).isoformat(),
            "probabilities": encode_array(p.astype(np.float32)), "latency_ms": float(rng.gamma(2.0, 6.0)),
            "cohort": {"camera": camera},
        })  # fmt: skip
        truth[pid] = label
    return records, truth


#: What issue 5 asks /metrics to hold for a classification model (plus the service's own).
REQUIRED_FAMILIES = {
    "cvmon_accuracy_ratio", "cvmon_top5_accuracy_ratio", "cvmon_precision_ratio", "cvmon_recall_ratio",
    "cvmon_f1_ratio", "cvmon_ece_ratio", "cvmon_label_coverage_ratio", "cvmon_label_latency_seconds",
    "cvmon_inference_latency_seconds", "cvmon_predictions_total", "cvmon_ground_truth_total",
    "cvmon_inference_errors_total", "cvmon_ingest_records_total", "cvmon_http_request_duration_seconds_bucket",
    "cvmon_job_duration_seconds", "cvmon_job_last_success_timestamp_seconds",
}  # fmt: skip


def gt(model: str, pid: str, label: int) -> dict:
    return {"prediction_id": pid, "model": model, "label": CLASSES[label]}


def expected(records: list[dict], truth: dict[str, int], labelled: set[str], *, hour=None, version=None, camera=None):
    """The metrics engine on the chosen rows, by hand."""
    rows = [
        r for r in records
        if r["prediction_id"] in labelled
        and (hour is None or datetime.fromisoformat(r["timestamp"]).replace(minute=0, second=0) == hour)
        and (version is None or r["model_version"] == version)
        and (camera is None or r["cohort"]["camera"] == camera)
    ]  # fmt: skip
    import base64

    probs = np.stack([np.frombuffer(base64.b64decode(r["probabilities"]["base64"]), "<f4") for r in rows])
    labels = np.array([truth[r["prediction_id"]] for r in rows])
    cls, cal = probability_states(labels, probs, classwise=True, samples=True)
    return classification_metrics(cls), calibration_metrics(cal), len(rows)


def api_value(client, model: str, metric: str, *, window: str, version: str, cohort: str = "", cls: str = "", start=None):
    body = client.get(
        f"/v1/models/{model}/metrics",
        params={"window": window, "version": version, "cohort": cohort, "metric": metric, "class": cls,
                "since": (NOW - timedelta(days=2)).isoformat(), "until": (NOW + timedelta(hours=1)).isoformat()},
    ).json()  # fmt: skip
    if start is None:
        (point,) = body["latest"]
    else:
        (point,) = [p for p in body["series"] if p["window_start"] == start.isoformat().replace("+00:00", "Z")]
    return point


def assert_api_is_the_engine(client, model: str, records, truth, labelled: set[str], *, hour, camera: str):
    """Accuracy and ECE of v1 over the latest day, and accuracy of one v2 camera-hour, as the API
    serves them, equal the engine on the labelled rows; returns the day's classification metrics."""
    want, want_cal, n = expected(records, truth, labelled, version="v1")
    got = api_value(client, model, "accuracy", window="1d", version="v1")
    assert got["value"] == pytest.approx(want.accuracy, abs=1e-12) and got["sample_count"] == n
    assert api_value(client, model, "ece", window="1d", version="v1")["value"] == pytest.approx(want_cal.ece, abs=1e-12)
    want_h, _, n_h = expected(records, truth, labelled, hour=hour, version="v2", camera=camera)
    got_h = api_value(client, model, "accuracy", window="1h", version="v2", cohort=f"camera:{camera}", start=hour)
    assert got_h["value"] == pytest.approx(want_h.accuracy, abs=1e-12) and got_h["sample_count"] == n_h
    return want


def scraped(client) -> dict[tuple, float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_pipeline_matches_the_engine_and_updates_only_late_hours(make_api, model_name):
    api = make_api(cohort_keys=("camera",), clock=lambda: NOW)
    records, truth = synth(model_name, 600, seed=1)
    rng = np.random.default_rng(7)
    order = rng.permutation(len(records))
    first = {records[i]["prediction_id"] for i in order[:300]}
    early = sorted(first)[:40]  # ground truth that arrives before its prediction
    clock = lambda: NOW  # noqa: E731
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES})
        assert c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in early]}).json()["accepted"] == 40
        shuffled = [records[i] for i in rng.permutation(len(records))]
        for k in range(0, len(shuffled), 150):
            assert c.post("/v1/predictions", json={"records": shuffled[k : k + 150]}).json()["accepted"] == 150
        rest = [gt(model_name, p, truth[p]) for p in sorted(first - set(early), key=lambda _: rng.random())]
        assert c.post("/v1/ground-truth", json={"records": rest}).json()["accepted"] == len(rest)

        (outcome,) = run_once(api.db.engine, api.settings, clock=clock, models=[model_name], jobs=["evaluate"])
        assert outcome.status == "ok" and outcome.detail.startswith("5 dirty hours recomputed")

        # the whole model version over the latest day, and one camera of one hour
        want, want_cal, n = expected(records, truth, first, version="v1")
        got = api_value(c, model_name, "accuracy", window="1d", version="v1")
        assert got["value"] == pytest.approx(want.accuracy, abs=1e-12) and got["sample_count"] == n
        assert api_value(c, model_name, "ece", window="1d", version="v1")["value"] == pytest.approx(want_cal.ece, abs=1e-12)
        dog = api_value(c, model_name, "recall", window="1d", version="v1", cls="dog")["value"]
        assert dog == pytest.approx(want.per_class[1].recall, abs=1e-12)
        want_h, _, n_h = expected(records, truth, first, hour=HOURS[2], version="v2", camera="cam-a")
        got_h = api_value(c, model_name, "accuracy", window="1h", version="v2", cohort="camera:cam-a", start=HOURS[2])
        assert got_h["value"] == pytest.approx(want_h.accuracy, abs=1e-12) and got_h["sample_count"] == n_h

        metrics = scraped(c)
        key = ("cvmon_accuracy_ratio", (("camera", ""), ("model", model_name), ("version", "v1"), ("window", "1d")))
        assert metrics[key] == pytest.approx(want.accuracy, abs=1e-12)
        cam = ("cvmon_accuracy_ratio", (("camera", "cam-a"), ("model", model_name), ("version", "v2"), ("window", "1h")))
        want_now, _, _ = expected(records, truth, first, hour=HOURS[-1], version="v2", camera="cam-a")
        assert metrics[cam] == pytest.approx(want_now.accuracy, abs=1e-12)
        assert metrics[("cvmon_predictions_total", (("model", model_name), ("version", "v1")))] == 400
        families = {name for name, _ in metrics}
        assert families >= REQUIRED_FAMILIES, REQUIRED_FAMILIES - families
        # latency quantiles: the sketch's sample of rank floor(q (n - 1)) within 1 %, in seconds
        v1_ms = [r["latency_ms"] for r in records if r["model_version"] == "v1" and datetime.fromisoformat(r["timestamp"]) >= NOW - timedelta(days=1)]
        p95 = ("cvmon_inference_latency_seconds", (("camera", ""), ("model", model_name), ("quantile", "0.95"), ("version", "v1"), ("window", "1d")))
        assert metrics[p95] == pytest.approx(np.quantile(v1_ms, 0.95, method="lower") / 1e3, rel=0.01)

        # late labels for two hours, and one changed label in a third hour
        late_hours = {HOURS[0], HOURS[3]}
        unlabelled = [r["prediction_id"] for r in records if r["prediction_id"] not in first]
        late = [p for p in unlabelled if datetime.fromisoformat(next(r["timestamp"] for r in records if r["prediction_id"] == p)).replace(minute=0, second=0) in late_hours][:50]
        relabel_pid = next(p for p in sorted(first) if datetime.fromisoformat(next(r["timestamp"] for r in records if r["prediction_id"] == p)).replace(minute=0, second=0) == HOURS[1])
        truth[relabel_pid] = (truth[relabel_pid] + 1) % len(CLASSES)
        computed_before = _computed_at(api.db.engine, model_name)
        body = c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in late]
                                                + [{**gt(model_name, relabel_pid, truth[relabel_pid]), "timestamp": (NOW + timedelta(minutes=1)).isoformat()}]}).json()  # fmt: skip
        assert body["accepted"] == len(late) + 1
        (outcome,) = run_once(api.db.engine, api.settings, clock=clock, models=[model_name], jobs=["evaluate"])
        assert outcome.detail.startswith("1 dirty hours recomputed, late labels merged into 2 hours")
        computed_after = _computed_at(api.db.engine, model_name)
        changed = {hour for hour in computed_after if computed_after[hour] != computed_before[hour]}
        assert changed == late_hours | {HOURS[1]}

        labelled = first | set(late)
        want2 = assert_api_is_the_engine(c, model_name, records, truth, labelled, hour=HOURS[3], camera="cam-b")

        # /metrics follows: the scrape re-reads the model whose rows changed
        assert scraped(c)[key] == pytest.approx(want2.accuracy, abs=1e-12) != want.accuracy

        cm = c.get(f"/v1/models/{model_name}/confusion-matrix", params={"window": "1d", "version": "v1"}).json()
        assert np.array_equal(np.array(cm["matrix"]), want2.confusion_matrix) and cm["classes"] == CLASSES
    assert_one_row_per_key(api.db.engine, model_name)


def assert_one_row_per_key(engine, model: str) -> None:
    """metric_points has no unique index (migration 0010): the writers, replacing whole windows,
    keep one row per window, slice, metric and class."""
    mp = t.metric_points.c
    key = (mp.window, mp.window_start, mp.version, mp.cohort_key, mp.cohort_value, mp.metric, mp["class"])
    with engine.connect() as conn:
        rows = conn.execute(sa.select(sa.func.count()).where(mp.model == model)).scalar()
        keys = conn.execute(sa.select(sa.func.count()).select_from(sa.select(*key).where(mp.model == model).distinct().subquery())).scalar()
    assert rows == keys > 0


def _computed_at(engine, model: str) -> dict[datetime, datetime]:
    es = t.eval_states.c
    with engine.connect() as conn:
        rows = conn.execute(sa.select(es.hour_start, sa.func.max(es.computed_at)).where(es.model == model).group_by(es.hour_start)).all()
    return dict(rows)


def boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """x1, y1, x2, y2 with COCO's mix of small, medium and large sizes."""
    xy = rng.uniform(0, 400, size=(n, 2))
    wh = rng.choice([12.0, 50.0, 150.0], size=(n, 1)) * rng.uniform(0.6, 1.4, size=(n, 2))
    return np.hstack([xy, xy + wh])


def evaluated(api, client, model: str, records, truth, labelled: set[str], worker: Worker | None = None) -> None:
    """Register the model, send its predictions and the labels of ``labelled``, run evaluate (by
    ``worker``, which keeps its hour-state cache, or a worker made for the run)."""
    client.put(f"/v1/models/{model}", json={"task": "classification", "classes": CLASSES})
    assert client.post("/v1/predictions", json={"records": records}).json()["accepted"] == len(records)
    client.post("/v1/ground-truth", json={"records": [gt(model, p, truth[p]) for p in sorted(labelled)]})
    worker = worker or Worker(api.db.engine, api.settings, clock=lambda: NOW)
    worker.run_once(models=[model], jobs=["evaluate"])


def test_late_labels_over_many_runs_are_parts_folded_back_into_one(make_api, model_name):
    """Each run that merges late labels into an hour adds a part to its states (only what the
    labels bring); at MAX_PARTS the parts fold into one. The values stay the engine's."""
    from monitor.server.services.evaluation import MAX_PARTS

    api = make_api(cohort_keys=("camera",), clock=lambda: NOW)
    records, truth = synth(model_name, 300, seed=3)
    ids = [r["prediction_id"] for r in records]
    labelled = set(ids[:100])
    es = t.eval_states.c
    with api.admin() as c:
        evaluated(api, c, model_name, records, truth, labelled)
        most_parts = []
        for batch in range(MAX_PARTS + 2):  # every batch has labels in every hour
            late = ids[100 + 15 * batch : 115 + 15 * batch]
            c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in late]})
            labelled |= set(late)
            (outcome,) = run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
            assert outcome.detail.startswith("0 dirty hours recomputed, late labels merged into 5 hours"), outcome.detail
            with api.db.engine.connect() as conn:
                counts = conn.execute(
                    sa.select(sa.func.count()).where(es.model == model_name).group_by(es.hour_start, es.version, es.cohort_key, es.cohort_value)
                ).scalars().all()  # fmt: skip
            most_parts.append(max(counts))
            assert_api_is_the_engine(c, model_name, records, truth, labelled, hour=HOURS[1], camera="cam-a")
    # a part per run, folded into one when a slice reaches MAX_PARTS
    assert most_parts[: MAX_PARTS - 1] == list(range(2, MAX_PARTS + 1))
    assert most_parts[MAX_PARTS - 1] == 1 and most_parts[MAX_PARTS] == 2
    assert_one_row_per_key(api.db.engine, model_name)


def test_a_labelling_backlog_is_merged_a_bounded_batch_per_run(make_api, model_name, monkeypatch):
    """Each run merges at most MAX_INCREMENTS_PER_RUN late labels, the first by (time, id), and
    leaves the rest for the next: predictions that share a timestamp are split across runs by id,
    and none is merged twice or lost."""
    import importlib

    monkeypatch.setattr(importlib.import_module("monitor.server.services.evaluation"), "MAX_INCREMENTS_PER_RUN", 7)
    api = make_api(cohort_keys=("camera",), clock=lambda: NOW)
    records, truth = synth(model_name, 120, seed=5)
    for r in records[::10]:  # groups of predictions with the same timestamp
        r["timestamp"] = HOURS[2].isoformat()
    ids = [r["prediction_id"] for r in records]
    labelled = set(ids[:40])
    inc = t.label_increments.c
    with api.admin() as c:
        evaluated(api, c, model_name, records, truth, labelled)
        backlog = ids[40:]
        c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in backlog]})
        waiting = []
        for _ in range(20):
            with api.db.engine.connect() as conn:
                waiting.append(conn.execute(sa.select(sa.func.count()).where(inc.model == model_name)).scalar())
            if waiting[-1] == 0:
                break
            (outcome,) = run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
            assert outcome.status == "ok", outcome.detail
        assert waiting == list(range(len(backlog), -1, -7)) + [0] * (len(backlog) % 7 != 0)
        assert_api_is_the_engine(c, model_name, records, truth, labelled | set(backlog), hour=HOURS[2], camera="cam-a")
    assert_one_row_per_key(api.db.engine, model_name)


def test_detection_map_matches_the_engine(make_api, model_name):
    api = make_api(cohort_keys=(), clock=lambda: NOW)
    rng = np.random.default_rng(3)
    classes = ["car", "person", "bike"]
    preds, gts = [], []
    cols: dict[str, list] = {k: [] for k in ("gi", "gb", "gc", "di", "db", "dc", "ds")}
    for i in range(120):
        pid = f"img-{i}"
        n_gt = int(rng.integers(0, 5))
        gb = boxes(rng, n_gt)
        gc = rng.integers(0, 3, n_gt)
        keep = rng.random(n_gt) < 0.8
        db = np.concatenate([gb[keep] + rng.normal(0, 3, size=(int(keep.sum()), 4)), boxes(rng, 2)])
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dc = np.concatenate([gc[keep], rng.integers(0, 3, 2)])
        ds = rng.uniform(0.05, 1, size=len(db)).astype(np.float32)
        ts = HOURS[i % 5] + timedelta(minutes=int(rng.integers(60)))
        preds.append({"prediction_id": pid, "model": model_name, "model_version": "v1", "timestamp": ts.isoformat(),
                      "boxes": db.astype(np.float32).tolist(), "box_classes": dc.tolist(), "box_scores": ds.tolist()})  # fmt: skip
        gts.append({"prediction_id": pid, "model": model_name, "boxes": gb.astype(np.float32).tolist(), "box_classes": gc.tolist()})
        key = image_key(pid)
        for name, values in (("gb", gb.astype(np.float32)), ("db", db.astype(np.float32))):
            cols[name].append(values.astype(np.float64))
        cols["gi"].append(np.full(n_gt, key))
        cols["gc"].append(gc)
        cols["di"].append(np.full(len(db), key))
        cols["dc"].append(dc)
        cols["ds"].append(ds.astype(np.float64))
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "detection", "classes": classes, "operating_threshold": 0.4})
        assert c.post("/v1/predictions", json={"records": preds}).json()["accepted"] == 120
        body = c.post("/v1/ground-truth", json={"records": gts}).json()
        assert body["accepted"] == 120, body
        (outcome,) = run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
        assert outcome.status == "ok", outcome.detail
        state = detection_state(
            gt_images=np.concatenate(cols["gi"]), gt_boxes=np.concatenate(cols["gb"]), gt_classes=np.concatenate(cols["gc"]),
            dt_images=np.concatenate(cols["di"]), dt_boxes=np.concatenate(cols["db"]), dt_classes=np.concatenate(cols["dc"]),
            dt_scores=np.concatenate(cols["ds"]), n_images=120,
        )  # fmt: skip
        want = detection_metrics(state, score_threshold=0.4)
        assert api_value(c, model_name, "map", window="1d", version="v1")["value"] == pytest.approx(want.ap, abs=1e-12)
        assert api_value(c, model_name, "map50", window="1d", version="v1")["value"] == pytest.approx(want.ap50, abs=1e-12)
        person = api_value(c, model_name, "recall", window="1d", version="v1", cls="person")["value"]
        assert person == pytest.approx(want.per_class[1].recall, abs=1e-12)
        metrics = scraped(c)
    key = ("cvmon_map_ratio", (("iou", "0.50"), ("model", model_name), ("version", "v1"), ("window", "1d")))
    assert metrics[key] == pytest.approx(want.ap50, abs=1e-12)


def test_a_model_that_gains_a_class_keeps_its_windows(make_api, model_name):
    """A new product variant: the class list grows by one; windows across the change still reduce."""
    api = make_api(cohort_keys=(), clock=lambda: NOW)
    rng = np.random.default_rng(11)
    before, after = HOURS[1], HOURS[3]
    truth: dict[str, int] = {}

    def batch(hour, n_classes: int, prefix: str) -> list[dict]:
        out = []
        for i in range(60):
            label = int(rng.integers(n_classes))
            logits = rng.normal(size=n_classes) + 2.0 * np.eye(n_classes)[label]
            p = (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)
            pid = f"{prefix}-{i}"
            truth[pid] = label
            out.append({"prediction_id": pid, "model": model_name, "model_version": "v1",
                        "timestamp": (hour + timedelta(minutes=i)).isoformat(), "probabilities": encode_array(p)})  # fmt: skip
        return out

    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES})
        old = batch(before, 4, "old")
        assert c.post("/v1/predictions", json={"records": old}).json()["accepted"] == 60
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": [*CLASSES, "elk"]})
        new = batch(after, 5, "new")
        assert c.post("/v1/predictions", json={"records": new}).json()["accepted"] == 60
        labels = [{"prediction_id": pid, "model": model_name, "label": label} for pid, label in truth.items()]
        assert c.post("/v1/ground-truth", json={"records": labels}).json()["accepted"] == 120
        (outcome,) = run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
        assert outcome.status == "ok", outcome.detail
        got = api_value(c, model_name, "accuracy", window="1d", version="v1")
        cm = c.get(f"/v1/models/{model_name}/confusion-matrix", params={"window": "1d"}).json()
    import base64

    predicted = [int(np.argmax(np.frombuffer(base64.b64decode(r["probabilities"]["base64"]), "<f4"))) for r in old + new]
    actual = [truth[r["prediction_id"]] for r in old + new]
    want = classification_metrics(classification_state(actual, predictions=predicted, num_classes=5))
    assert got["value"] == pytest.approx(want.accuracy, abs=1e-12) and got["sample_count"] == 120
    assert cm["classes"][-1] == "elk" and np.array_equal(np.array(cm["matrix"]), want.confusion_matrix)


def racing_setup(make_api, model_name: str, seed: int):
    """An API on PostgreSQL (only there can a label commit while a run holds the database), the
    evaluate module to patch, and 200 predictions with their labels and ids."""
    import importlib

    api = make_api(cohort_keys=("camera",), clock=lambda: NOW)
    if not api.db.is_pg:
        pytest.skip("SQLite serialises writers: no label can commit while a run holds the database")
    records, truth = synth(model_name, 200, seed=seed)
    return api, importlib.import_module("monitor.server.services.evaluation"), records, truth, [r["prediction_id"] for r in records]


def test_labels_committed_during_a_merge_wait_for_the_next_run(make_api, model_name, monkeypatch):
    """The merge deletes the increments it reads, in its snapshot: labels that commit while it
    runs keep their increments, and the next run merges them. Nothing is lost or counted twice."""
    api, evaluate_module, records, truth, ids = racing_setup(make_api, model_name, seed=9)
    first, late, racing = set(ids[:80]), ids[80:120], ids[120:150]
    inc, es = t.label_increments.c, t.eval_states.c
    with api.admin() as c:
        evaluated(api, c, model_name, records, truth, first)
        c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in late]})
        real_slice_states = evaluate_module.slice_states
        raced = []

        def slice_states_racing_a_label_batch(*args, **kwargs):
            if not raced:  # inside the merge's snapshot, after its increments were taken
                raced.append(c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in racing]}).json())
            return real_slice_states(*args, **kwargs)

        monkeypatch.setattr(evaluate_module, "slice_states", slice_states_racing_a_label_batch)
        run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
        monkeypatch.setattr(evaluate_module, "slice_states", real_slice_states)
        assert raced[0]["accepted"] == len(racing)
        with api.db.engine.connect() as conn:
            waiting = conn.execute(sa.select(inc.prediction_id).where(inc.model == model_name)).scalars().all()
        assert sorted(waiting) == sorted(racing)
        (outcome,) = run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
        assert outcome.status == "ok", outcome.detail
        with api.db.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).where(inc.model == model_name)).scalar() == 0
            labelled = conn.execute(sa.select(sa.func.sum(es.labelled)).where(es.model == model_name, es.cohort_key == "")).scalar()
        assert labelled == len(first) + len(late) + len(racing)
        assert_api_is_the_engine(c, model_name, records, truth, first | set(late) | set(racing), hour=HOURS[2], camera="cam-a")


def test_labels_of_hours_not_evaluated_yet_move_the_mark_instead_of_logging_increments(make_api, model_name, monkeypatch):
    """A first label of an hour waiting to be recomputed logs no increment (the recompute reads it
    with the hour's rows). One that commits inside a recompute's snapshot, which cannot see it,
    moves the hour's mark: the hour stays dirty, and the next run counts it. Nothing is lost or
    counted twice."""
    api, evaluate_module, records, truth, ids = racing_setup(make_api, model_name, seed=11)
    first = set(ids[:100])
    in_hour = {r["prediction_id"] for r in records if datetime.fromisoformat(r["timestamp"]).replace(minute=0, second=0) == HOURS[2]}
    racing = [p for p in ids[100:160] if p in in_hour]  # labels of one hour, sent while it is recomputed
    inc, es, d = t.label_increments.c, t.eval_states.c, t.dirty_hours.c
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES})
        c.post("/v1/predictions", json={"records": records})
        c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in sorted(first)]})
        with api.db.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).where(inc.model == model_name)).scalar() == 0
        real_read_hour = evaluate_module.read_hour
        raced = []

        def read_hour_racing_a_label_batch(conn, model, task, hour):
            rows = real_read_hour(conn, model, task, hour)
            if hour == HOURS[2] and not raced:  # the hour is read: its snapshot cannot see these
                raced.append(c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in racing]}).json())
            return rows

        monkeypatch.setattr(evaluate_module, "read_hour", read_hour_racing_a_label_batch)
        run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
        monkeypatch.setattr(evaluate_module, "read_hour", real_read_hour)
        assert raced[0]["accepted"] == len(racing) > 0
        with api.db.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).where(inc.model == model_name)).scalar() == 0
            still_dirty = conn.execute(sa.select(d.hour_start).where(d.model == model_name)).scalars().all()
            labelled = conn.execute(sa.select(sa.func.sum(es.labelled)).where(es.model == model_name, es.cohort_key == "")).scalar()
        assert still_dirty == [HOURS[2]]
        assert labelled == len(first)
        (outcome,) = run_once(api.db.engine, api.settings, clock=lambda: NOW, models=[model_name], jobs=["evaluate"])
        assert outcome.status == "ok" and outcome.detail.startswith("1 dirty hours recomputed"), outcome.detail
        with api.db.engine.connect() as conn:
            labelled = conn.execute(sa.select(sa.func.sum(es.labelled)).where(es.model == model_name, es.cohort_key == "")).scalar()
        assert labelled == len(first) + len(racing)
        assert_api_is_the_engine(c, model_name, records, truth, first | set(racing), hour=HOURS[2], camera="cam-a")
