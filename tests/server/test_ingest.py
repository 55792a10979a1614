"""POST /v1/predictions on PostgreSQL and SQLite: idempotency, partial rejection, limits, storage."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.server.store import tables as t
from monitor.wire import DEFAULT_LIMITS, encode_array
from tests.server.records import CLASSES, cls_record, det_record, register


def stored(db, model: str) -> list[sa.Row]:
    with db.engine.connect() as conn:
        return list(conn.execute(sa.select(t.predictions).where(t.predictions.c.model == model).order_by(t.predictions.c.prediction_id)))


def test_batch_is_stored_with_packed_arrays(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        emb = np.linspace(-1, 1, 512, dtype=np.float16)
        recs = [cls_record(model_name, f"p{i}", embedding=encode_array(emb, "float16")) for i in range(3)]
        r = c.post("/v1/predictions", json={"records": recs})
    assert r.status_code == 200
    assert r.json() == {"accepted": 3, "duplicates": 0, "rejected": []}
    rows = stored(api.db, model_name)
    assert [row.prediction_id for row in rows] == ["p0", "p1", "p2"]
    probs = np.frombuffer(rows[0].probabilities, dtype="<f4")
    np.testing.assert_array_equal(probs, np.array([0.7, 0.2, 0.1], dtype=np.float32))
    assert rows[0].predicted_class == 0 and rows[0].confidence == pytest.approx(0.7)
    assert rows[0].cohort == {"camera": "cam-1"} and rows[0].latency_ms == pytest.approx(12.5)
    with api.db.engine.connect() as conn:
        embs = conn.execute(sa.select(t.embeddings).where(t.embeddings.c.model == model_name)).all()
    assert len(embs) == 3 and embs[0].dtype == 2
    np.testing.assert_array_equal(np.frombuffer(embs[0].embedding, dtype="<f2"), emb)


def test_detection_record_round_trips(api, model_name):
    with api.admin() as c:
        register(c, model_name, task="detection")
        r = c.post("/v1/predictions", json={"records": [det_record(model_name, "d1")]})
    assert r.json()["accepted"] == 1
    (row,) = stored(api.db, model_name)
    np.testing.assert_array_equal(np.frombuffer(row.boxes, "<f4").reshape(-1, 4), [[10, 10, 50, 60], [0, 0, 5, 5]])
    np.testing.assert_array_equal(np.frombuffer(row.box_classes, "<i4"), [CLASSES.index("dent"), CLASSES.index("ok")])
    np.testing.assert_allclose(np.frombuffer(row.box_scores, "<f4"), [0.9, 0.3], rtol=1e-6)


def test_retried_batch_is_all_duplicates(api, model_name):
    recs = [cls_record(model_name, f"p{i}") for i in range(50)]
    with api.admin() as c:
        register(c, model_name)
        first = c.post("/v1/predictions", json={"records": recs}).json()
        again = c.post("/v1/predictions", json={"records": recs}).json()
        overlap = c.post("/v1/predictions", json={"records": recs[25:] + [cls_record(model_name, "new")]}).json()
        info = c.get(f"/v1/models/{model_name}").json()
    assert first == {"accepted": 50, "duplicates": 0, "rejected": []}
    assert again == {"accepted": 0, "duplicates": 50, "rejected": []}
    assert overlap == {"accepted": 1, "duplicates": 25, "rejected": []}
    assert len(stored(api.db, model_name)) == 51
    assert info["counts"]["predictions"] == 51


def test_duplicates_inside_one_batch(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        r = c.post("/v1/predictions", json={"records": [cls_record(model_name, "x"), cls_record(model_name, "x")]})
    assert r.json() == {"accepted": 1, "duplicates": 1, "rejected": []}


def test_retry_without_timestamp_is_still_a_duplicate(api, model_name):
    """The server fills in `now`; a retry gets a later `now` but the same prediction_id."""
    rec = cls_record(model_name, "late")
    del rec["timestamp"]
    with api.admin() as c:
        register(c, model_name)
        assert c.post("/v1/predictions", json={"records": [rec]}).json()["accepted"] == 1
        assert c.post("/v1/predictions", json={"records": [rec]}).json()["duplicates"] == 1
    assert len(stored(api.db, model_name)) == 1


BAD_RECORDS = [
    pytest.param({"model": "__MODEL__", "model_version": "v1", "probabilities": [1, 0, 0]}, "prediction_id is required", id="no-id"),
    pytest.param({"prediction_id": "x" * 129}, "limit is 128", id="id-too-long"),
    pytest.param({"model": "nope"}, "unknown model 'nope'", id="unknown-model"),
    pytest.param({"probabilities": [0.5, 0.5]}, "has 2 values; model", id="wrong-number-of-probabilities"),
    pytest.param({"probabilities": [float("nan"), 0.5, 0.5]}, "NaN", id="nan-probability"),
    pytest.param({"probabilities": [0.1, 0.1, 0.1]}, "sum to 0.3000", id="not-normalised"),
    pytest.param({"probabilities": [2.0, -1.0, 0.0]}, "lie in [0, 1]", id="logits"),
    pytest.param({"probabilities": None, "predicted_class": "rust"}, "not a class of model", id="unknown-class"),
    pytest.param({"probabilities": None}, "needs probabilities or predicted_class", id="no-outputs"),
    pytest.param({"timestamp": "yesterday"}, "not RFC 3339", id="bad-timestamp"),
    pytest.param({"timestamp": "2026-11-20T10:00:00"}, "no UTC offset", id="naive-timestamp"),
    pytest.param({"timestamp": 1.7e12}, "out of range", id="milliseconds-timestamp"),
    pytest.param({"latency_ms": -3}, "must not be negative", id="negative-latency"),
    pytest.param({"status": "maybe"}, "'ok' or 'error'", id="bad-status"),
    pytest.param({"cohort": ["cam-1"]}, "cohort must be an object", id="cohort-not-object"),
    pytest.param({"cohort": {"camera": {"nested": 1}}}, "must be a string, number or boolean", id="cohort-nested"),
    pytest.param({"embedding": {"base64": "!!!", "dtype": "float32"}}, "not valid base64", id="bad-base64"),
    pytest.param({"embedding": {"base64": "AAAA", "dtype": "float32", "x": 1}}, "exactly 'base64' and 'dtype'", id="base64-extra-key"),
    pytest.param({"embedding": [1.0, "a"]}, "only numbers", id="embedding-not-numbers"),
    pytest.param({"boxes": [[0, 0, 1, 1]]}, "for detection models", id="boxes-on-classifier"),
    pytest.param({"probabilites": [0.7, 0.2, 0.1]}, "unknown field 'probabilites'", id="typo-field"),
    pytest.param({"trace_id": "xyz"}, "32 lowercase hex", id="bad-trace-id"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_RECORDS)
def test_malformed_record_is_rejected_and_the_rest_stored(api, model_name, change, reason):
    bad = cls_record(model_name, "bad")
    for key, value in change.items():
        if value is None:
            bad.pop(key, None)
        else:
            bad[key] = model_name if value == "__MODEL__" else value
    if "prediction_id" not in change and change.get("model") == "__MODEL__":
        bad.pop("prediction_id")
    recs = [cls_record(model_name, "good-1"), bad, cls_record(model_name, "good-2")]
    with api.admin() as c:
        register(c, model_name)
        r = c.post("/v1/predictions", content=json.dumps(recs and {"records": recs}, allow_nan=True), headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 2
    assert [x["index"] for x in body["rejected"]] == [1]
    assert reason in body["rejected"][0]["error"]
    assert [row.prediction_id for row in stored(api.db, model_name)] == ["good-1", "good-2"]


DETECTION_BAD = [
    pytest.param({"boxes": [[10, 10, 5, 60]], "box_classes": ["dent"], "box_scores": [0.5]}, "x2 < x1", id="x2-before-x1"),
    pytest.param({"boxes": [[0, 0, 1, 1]], "box_classes": ["dent", "ok"], "box_scores": [0.5]}, "differ in length", id="mismatched-lengths"),
    pytest.param({"boxes": [[0, 0, 1]], "box_classes": ["dent"], "box_scores": [0.5]}, "[x1, y1, x2, y2]", id="three-coordinates"),
    pytest.param({"box_classes": [7, 0]}, "outside 0..2", id="class-index-out-of-range"),
    pytest.param({"box_scores": [1.5, 0.2]}, "box_scores must lie in [0, 1]", id="score-above-one"),
    pytest.param({"box_scores": None}, "go together", id="missing-scores"),
]


@pytest.mark.parametrize(("change", "reason"), DETECTION_BAD)
def test_malformed_detection_is_rejected(api, model_name, change, reason):
    bad = det_record(model_name, "bad")
    for key, value in change.items():
        if value is None:
            bad.pop(key)
        else:
            bad[key] = value
    with api.admin() as c:
        register(c, model_name, task="detection")
        body = c.post("/v1/predictions", json={"records": [det_record(model_name, "good"), bad]}).json()
    assert body["accepted"] == 1
    assert body["rejected"][0]["index"] == 1 and reason in body["rejected"][0]["error"], body


def test_empty_detections_and_error_status_are_valid(api, model_name):
    with api.admin() as c:
        register(c, model_name, task="detection")
        empty = det_record(model_name, "empty", boxes=[], box_classes=[], box_scores=[])
        failed = {"prediction_id": "failed", "model": model_name, "model_version": "v1", "status": "error", "latency_ms": 900}
        body = c.post("/v1/predictions", json={"records": [empty, failed]}).json()
        info = c.get(f"/v1/models/{model_name}").json()
    assert body == {"accepted": 2, "duplicates": 0, "rejected": []}
    assert info["versions"][0]["errors"] == 1


def test_all_rejected_is_422(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        r = c.post("/v1/predictions", json={"records": [cls_record(model_name, "a", probs=[1, 0])]})
    assert r.status_code == 422
    assert r.json()["accepted"] == 0 and r.json()["rejected"][0]["index"] == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"{not json", 400, id="not-json"),
        pytest.param(b'{"records": []}', 422, id="empty-records"),
        pytest.param(b'{"rows": []}', 422, id="wrong-shape"),
        pytest.param(b"[1, 2]", 422, id="array-body"),
    ],
)
def test_unusable_bodies(api, body, status):
    with api.admin() as c:
        r = c.post("/v1/predictions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_gzip_body_is_accepted(api, model_name):
    recs = [cls_record(model_name, f"g{i}") for i in range(20)]
    with api.admin() as c:
        register(c, model_name)
        r = c.post(
            "/v1/predictions",
            content=gzip.compress(json.dumps({"records": recs}).encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    assert r.json() == {"accepted": 20, "duplicates": 0, "rejected": []}


def test_body_over_the_limit_is_413(make_api, model_name):
    api = make_api(max_body_bytes=4096)
    recs = [cls_record(model_name, f"p{i}") for i in range(200)]
    raw = json.dumps({"records": recs}).encode()
    with api.admin() as c:
        register(c, model_name)
        plain = c.post("/v1/predictions", content=raw, headers={"Content-Type": "application/json"})
        chunked = c.post("/v1/predictions", content=iter([raw[:3000], raw[3000:]]), headers={"Content-Type": "application/json"})
        bomb = c.post(
            "/v1/predictions",
            content=gzip.compress(raw),  # small on the wire, over the limit once inflated
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )
    assert len(gzip.compress(raw)) < 4096
    for r in (plain, chunked, bomb):
        assert r.status_code == 413, r.text
        assert "limit" in r.json()["detail"]
    assert stored(api.db, model_name) == []


def test_oversized_embedding_is_refused_per_record(api, model_name):
    values = DEFAULT_LIMITS.max_embedding_dim + 100
    huge = {"base64": "A" * (values * 4 * 4 // 3), "dtype": "float32"}  # 4 bytes per value, 4 chars per 3 bytes
    with api.admin() as c:
        register(c, model_name)
        body = c.post("/v1/predictions", json={"records": [cls_record(model_name, "big", embedding=huge), cls_record(model_name, "ok")]}).json()
    assert body["accepted"] == 1
    assert "larger than 8192 values" in body["rejected"][0]["error"]


def test_pii_cohort_fields_are_dropped_or_hashed(make_api, model_name):
    api = make_api(pii_drop=("operator",), pii_hash=("site",), pii_hash_key="k3y")
    rec = cls_record(model_name, "pii", cohort={"camera": "cam-1", "operator": "alice", "site": "berlin-3"})
    with api.admin() as c:
        register(c, model_name)
        assert c.post("/v1/predictions", json={"records": [rec]}).json()["accepted"] == 1
    (row,) = stored(api.db, model_name)
    assert set(row.cohort) == {"camera", "site"}
    assert row.cohort["camera"] == "cam-1" and row.cohort["site"] != "berlin-3" and len(row.cohort["site"]) == 16
