"""Resources per inference and annotators over HTTP, on PostgreSQL and SQLite: stored as sent,
bad values rejected per record with a reason, the model's label policy through the registry."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from monitor.server.api.schemas import GroundTruthRecord, PredictionRecord, ResourcesRecord
from monitor.server.store import tables as t
from monitor.wire import _GROUND_TRUTH_FIELDS, _PREDICTION_FIELDS, RESOURCE_FIELDS
from tests.server.records import cls_record, det_record, register

GPU = {"device": "NVIDIA A100-SXM4-80GB", "batch_size": 32, "cpu_time_ms": 4.25, "gpu_utilization_ratio": 0.83,
       "gpu_memory_bytes": 21_474_836_480}  # fmt: skip


def resources(db, model: str) -> dict[str, tuple]:
    p = t.predictions.c
    with db.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                p.prediction_id, p.device, p.batch_size, p.cpu_time_ms, p.gpu_utilization_ratio, p.gpu_memory_bytes
            ).where(p.model == model)
        ).all()
    return {r[0]: tuple(r[1:]) for r in rows}


def test_resources_are_stored_with_the_prediction(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        register(c, model_name + "-det", task="detection")
        body = c.post("/v1/predictions", json={"records": [
            cls_record(model_name, "gpu", resources=GPU),
            cls_record(model_name, "cpu", resources={"device": "cpu", "batch_size": 1, "cpu_time_ms": 12}),
            cls_record(model_name, "none"),
            cls_record(model_name, "empty", resources={}),
        ]}).json()  # fmt: skip
        det = c.post(
            "/v1/predictions", json={"records": [det_record(model_name + "-det", "d", resources={"batch_size": 4})]}
        ).json()
    assert body == {"accepted": 4, "duplicates": 0, "rejected": []} and det["accepted"] == 1
    got = resources(api.db, model_name)
    assert got["gpu"][:2] == ("NVIDIA A100-SXM4-80GB", 32) and got["gpu"][4] == 21_474_836_480
    assert got["gpu"][2:4] == pytest.approx((4.25, 0.83), rel=1e-6)  # REAL columns: float32
    assert got["cpu"] == ("cpu", 1, 12.0, None, None)
    assert got["none"] == got["empty"] == (None, None, None, None, None)
    assert resources(api.db, model_name + "-det")["d"] == (None, 4, None, None, None)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("cpu", "resources must be an object", id="not-an-object"),
        pytest.param({"gpu": "a100"}, "unknown field resources.gpu", id="unknown-field"),
        pytest.param({"device": ""}, "resources.device must be 1 to 128", id="empty-device"),
        pytest.param({"device": "x" * 129}, "resources.device must be 1 to 128", id="long-device"),
        pytest.param({"device": 3}, "resources.device", id="numeric-device"),
        pytest.param({"batch_size": 0}, "resources.batch_size must be an integer from 1", id="zero-batch"),
        pytest.param({"batch_size": 2.5}, "resources.batch_size", id="fractional-batch"),
        pytest.param({"batch_size": True}, "resources.batch_size", id="boolean-batch"),
        pytest.param({"batch_size": 10**7}, "resources.batch_size", id="huge-batch"),
        pytest.param({"cpu_time_ms": -1}, "resources.cpu_time_ms must be a finite number", id="negative-cpu"),
        pytest.param({"cpu_time_ms": "12"}, "resources.cpu_time_ms", id="text-cpu"),
        pytest.param(
            {"gpu_utilization_ratio": 83}, "resources.gpu_utilization_ratio must be a number from 0 to 1", id="percent"
        ),
        pytest.param({"gpu_memory_bytes": -5}, "resources.gpu_memory_bytes", id="negative-memory"),
        pytest.param({"gpu_memory_bytes": 2**64}, "resources.gpu_memory_bytes", id="memory-beyond-int64"),
        pytest.param({"gpu_memory_bytes": 1.5e9}, "resources.gpu_memory_bytes", id="float-memory"),
    ],
)
def test_bad_resources_are_rejected_and_the_rest_stored(api, model_name, value, reason):
    with api.admin() as c:
        register(c, model_name)
        r = c.post(
            "/v1/predictions",
            json={"records": [cls_record(model_name, "good"), cls_record(model_name, "bad", resources=value)]},
        )
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 1 and [x["index"] for x in body["rejected"]] == [1]
    assert reason in body["rejected"][0]["error"]
    assert set(resources(api.db, model_name)) == {"good"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        pytest.param({"audit": "yes"}, "audit must be true or false", id="audit-text"),
        pytest.param({"audit": 1}, "audit must be true or false", id="audit-number"),
        pytest.param({"annotator": 7}, "annotator must be a string", id="annotator-number"),
        pytest.param({"annotator": "a" * 129}, "annotator is 129 characters", id="annotator-long"),
        pytest.param({"annotator": "a\x00b"}, "annotator contains a NUL", id="annotator-nul"),
    ],
)
def test_bad_annotator_fields_are_rejected(api, model_name, change, reason):
    with api.admin() as c:
        register(c, model_name)
        rec = {"prediction_id": "p", "model": model_name, "label": "dent", **change}
        body = c.post(
            "/v1/ground-truth", json={"records": [rec, {"prediction_id": "q", "model": model_name, "label": "ok"}]}
        ).json()
    assert body["accepted"] == 1 and reason in body["rejected"][0]["error"]


def test_label_policy_through_the_registry(api, model_name):
    with api.admin() as c:
        r = c.put(
            f"/v1/models/{model_name}",
            json={"task": "classification", "classes": ["a", "b"], "label_policy": "majority"},
        )
        assert r.status_code == 201 and r.json()["label_policy"] == "majority"
        # left out on an update: kept
        r = c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": ["a", "b", "c"]})
        assert r.json()["label_policy"] == "majority"
        assert c.get(f"/v1/models/{model_name}").json()["label_policy"] == "majority"
        bad = c.put(
            f"/v1/models/{model_name}",
            json={"task": "classification", "classes": ["a", "b", "c"], "label_policy": "vote"},
        )
        assert bad.status_code == 422
        det = c.put(
            f"/v1/models/{model_name}-det", json={"task": "detection", "classes": ["a"], "label_policy": "exclude"}
        )
        assert det.status_code == 422 and "classification models" in det.json()["detail"]
        # two annotators' labels over HTTP: both kept, the majority policy picks (a tie: the newest)
        c.post("/v1/predictions", json={"records": [cls_record(model_name, "p", probs=[0.5, 0.3, 0.2])]})
        body = c.post("/v1/ground-truth", json={"records": [
            {"prediction_id": "p", "model": model_name, "label": "a", "annotator": "ann", "timestamp": "2026-11-20T10:00:00Z"},
            {"prediction_id": "p", "model": model_name, "label": "b", "annotator": "bo", "timestamp": "2026-11-20T11:00:00Z"},
        ]}).json()  # fmt: skip
    assert body == {"accepted": 2, "duplicates": 0, "rejected": []}
    g, a = t.ground_truth.c, t.label_annotations.c
    with api.db.engine.connect() as conn:
        assert conn.execute(sa.select(g.label).where(g.model == model_name)).scalar_one() == 1
        assert conn.execute(sa.select(sa.func.count()).where(a.model == model_name)).scalar_one() == 2


def test_the_published_schemas_name_the_wire_fields():
    assert set(PredictionRecord.model_fields) == set(_PREDICTION_FIELDS)
    assert set(GroundTruthRecord.model_fields) == set(_GROUND_TRUTH_FIELDS)
    assert tuple(ResourcesRecord.model_fields) == RESOURCE_FIELDS
