"""The labelling loop over HTTP: a queue built, exported (Label Studio, CVAT, COCO; logged), labels
back from Label Studio's webhook in any order and from files, as ground truth (idempotent, newest
revision wins, annotators kept); queue size and age on /metrics; labelling.ready emitted."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.sdk import Client, SamplePolicy
from tests.samples.conftest import CLASSES, Store, digit_image, png, register, sample_settings

pytestmark = pytest.mark.slow  # images through the SDK, OpenCV and the object stores

N = 30


@pytest.fixture
def loop(make_api: Any, model_name: str, tmp_path: Path) -> dict[str, Any]:
    """A classifier with N samples (probabilities known), a samples key and an ingest key."""
    api = make_api(samples=sample_settings(model_name, Store("local", str(tmp_path / "samples"), {})))
    register(api, model_name)
    rng = np.random.default_rng(3)
    probs = rng.dirichlet(np.ones(3) * 0.7, size=N).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    mon = Client(api.url, api_key=api.admin_key, model=model_name, version="v1", classes=3, spool_dir=tmp_path / "spool",
                 samples=SamplePolicy(rate=1.0, low_confidence=None))  # fmt: skip
    pids = [mon.log_classification(p, image=png(digit_image(i, 16)), embedding=rng.normal(size=4)) for i, p in enumerate(probs)]
    assert mon.flush(60)
    mon.close()
    return {"api": api, "model": model_name, "pids": pids, "probs": probs, "viewer": api.create_key(["samples"], [model_name]),
            "ingest": api.create_key(["ingest"], [model_name])}  # fmt: skip


def _gt(api: Any, model: str) -> dict[str, Any]:
    from monitor.server.store import tables as t

    with api.db.engine.connect() as conn:
        labels = dict(conn.execute(sa.select(t.ground_truth.c.prediction_id, t.ground_truth.c.label).where(t.ground_truth.c.model == model)).all())
        annotators = conn.execute(
            sa.select(t.label_annotations.c.prediction_id, t.label_annotations.c.annotator, t.label_annotations.c.label)
            .where(t.label_annotations.c.model == model)
        ).all()  # fmt: skip
    return {"labels": labels, "annotators": sorted((p, a, lab) for p, a, lab in annotators)}


def test_least_confidence_queue_export_and_labels_back(loop: dict[str, Any]) -> None:
    api, model, pids, probs = loop["api"], loop["model"], loop["pids"], loop["probs"]
    with api.client(loop["viewer"]) as http:
        built = http.post(f"/v1/models/{model}/queues/week-1", json={"strategy": "least_confidence", "size": 10, "diversity": False})
        assert built.status_code == 200, built.text
        assert (built.json()["size"], built.json()["pending"]) == (10, 10)
        items = http.get(f"/v1/models/{model}/queues/week-1").json()["items"]
        order = np.argsort(probs.max(axis=1), kind="stable")[:10]  # the oracle: the 10 least confident
        assert [i["prediction_id"] for i in items] == [pids[j] for j in order]
        assert [i["score"] for i in items] == pytest.approx([1 - probs[j].max() for j in order], abs=1e-6)
        tasks = http.get(f"/v1/models/{model}/queues/week-1/export", params={"format": "label-studio"}).json()
    assert len(tasks) == 10 and tasks[0]["data"]["image"].startswith("data:image/png;base64,")
    first = tasks[0]
    assert first["data"]["prediction_id"] == pids[order[0]]
    assert first["predictions"][0]["result"][0]["value"]["choices"] == [CLASSES[int(probs[order[0]].argmax())]]
    with api.admin() as http:
        access = http.get(f"/v1/models/{model}/sample-access").json()["access"]
        events = http.get(f"/v1/models/{model}/automation/events", params={"type": "labelling.ready"}).json()
    assert len(access) == 10 and {a["action"] for a in access} == {"export"}
    (event,) = events["events"]
    assert event["payload"]["data"]["queue"] == "week-1" and event["payload"]["data"]["size"] == 10

    # Label Studio's webhook: created, a retry, an older update (ignored), a newer one, another annotator
    def hook(action: str, task: dict[str, Any], label: str, at: str, user: Any) -> Any:
        annotation = {"id": 1, "result": [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}],
                      "completed_by": user, "created_at": "2026-12-01T10:00:00Z", "updated_at": at}  # fmt: skip
        with api.client(loop["ingest"]) as http:
            return http.post(f"/v1/models/{model}/labels/label-studio", json={"action": action, "task": task, "annotation": annotation})

    a, b = tasks[0], tasks[1]
    assert hook("ANNOTATION_UPDATED", a, "person", "2026-12-01T12:00:00Z", {"id": 7, "email": "ann@example.com"}).json()["accepted"] == 1
    # the creation arrives after the update: older, so it changes nothing
    assert hook("ANNOTATION_CREATED", a, "dog", "2026-12-01T11:00:00Z", {"id": 7, "email": "ann@example.com"}).json()["duplicates"] == 1
    assert hook("ANNOTATION_UPDATED", a, "person", "2026-12-01T12:00:00Z", {"id": 7, "email": "ann@example.com"}).json()["duplicates"] == 1
    assert hook("ANNOTATION_CREATED", a, "cat", "2026-12-01T12:30:00Z", 9).json()["accepted"] == 1
    assert hook("ANNOTATION_CREATED", b, "dog", "2026-12-01T12:00:00Z", 9).json()["accepted"] == 1
    ignored = hook("PROJECT_UPDATED", b, "dog", "2026-12-01T12:00:00Z", 9)
    assert ignored.status_code == 200 and ignored.json()["accepted"] == 0
    gt = _gt(api, model)
    pa, pb = a["data"]["prediction_id"], b["data"]["prediction_id"]
    assert gt["annotators"] == sorted([(pa, "label-studio:ann@example.com", 2), (pa, "label-studio:9", 0), (pb, "label-studio:9", 1)])
    assert gt["labels"][pb] == 1 and pa in gt["labels"]  # the model's label policy (newest) picks among annotators
    with api.client(loop["viewer"]) as http:
        status = http.get(f"/v1/models/{model}/queues/week-1").json()
        labelled = http.get(f"/v1/models/{model}/samples", params={"queue": "week-1", "labelled": True}).json()["samples"]
    assert (status["pending"], status["labelled"]) == (8, 2)
    assert sorted(s["prediction_id"] for s in labelled) == sorted([pa, pb]) and {s["queue_rank"] for s in labelled} == {1, 2}
    with api.admin() as http:
        metrics = http.get("/metrics").text
    assert f'cvmon_labelling_queue_items{{model="{model}",queue="week-1"}} 8.0' in metrics
    assert f'cvmon_labelling_queue_age_seconds{{model="{model}",queue="week-1"}}' in metrics


def test_labels_from_files(loop: dict[str, Any]) -> None:
    api, model = loop["api"], loop["model"]
    with api.client(loop["viewer"]) as http:
        http.post(f"/v1/models/{model}/queues/q", json={"strategy": "entropy", "size": 4})
        tasks = http.get(f"/v1/models/{model}/queues/q/export").json()
        cvat = http.get(f"/v1/models/{model}/queues/q/export", params={"format": "cvat"}).content
        coco = http.get(f"/v1/models/{model}/queues/q/export", params={"format": "coco"})
    assert coco.status_code == 422 and "detection" in coco.json()["detail"]
    # a Label Studio JSON export: tasks with their annotations (a skipped one is not a label)
    export = [
        {**tasks[0], "annotations": [{"result": [{"type": "choices", "value": {"choices": ["dog"]}}], "completed_by": 3,
                                      "updated_at": "2026-12-02T09:00:00.123456Z"}]},
        {**tasks[1], "annotations": [{"result": [], "was_cancelled": True, "completed_by": 3}]},
        {"data": {"image": "x"}, "annotations": []},  # not a cvmon task
    ]  # fmt: skip
    with api.client(loop["ingest"]) as http:
        answer = http.post(f"/v1/models/{model}/labels/import", params={"format": "label-studio"}, content=json.dumps(export))
        assert answer.json()["accepted"] == 1 and answer.json()["skipped"][0]["index"] == 2
        # CVAT: the labeller replaced the model's tags in annotations.xml
        archive = zipfile.ZipFile(io.BytesIO(cvat))
        assert sorted(n for n in archive.namelist() if n.startswith("images/")) == sorted(f"images/{t['data']['sample_id']}.png" for t in tasks)
        root = ET.fromstring(archive.read("annotations.xml"))
        for image in root.iter("image"):
            for tag in image.findall("tag"):
                tag.set("label", "person")
                tag.set("source", "manual")
        body = ET.tostring(root)
        answer = http.post(f"/v1/models/{model}/labels/import", params={"format": "cvat", "annotator": "cvat-team"}, content=body)
        assert answer.json()["accepted"] == 4, answer.text
        again = http.post(f"/v1/models/{model}/labels/import", params={"format": "cvat", "annotator": "cvat-team"}, content=body)
        assert again.json()["duplicates"] == 4
        bomb = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xx">]><annotations>&x;</annotations>'
        refused = http.post(f"/v1/models/{model}/labels/import", params={"format": "cvat"}, content=bomb)
        assert refused.status_code == 422 and "DOCTYPE" in refused.json()["detail"]
        assert http.post(f"/v1/models/{model}/labels/import", params={"format": "coco"}, content=b"PK\x03\x04junk").status_code == 422
    gt = _gt(api, model)
    assert sum(1 for _, a, lab in gt["annotators"] if a == "cvat-team" and lab == 2) == 4
    assert ("label-studio:3" in {a for _, a, _ in gt["annotators"]})


def test_detection_boxes_survive_the_round_trip_through_coco(make_api: Any, model_name: str, tmp_path: Path) -> None:
    from PIL import Image

    api = make_api(samples=sample_settings(model_name, Store("local", str(tmp_path / "samples"), {})))
    register(api, model_name, task="detection", classes=["car", "plate"])
    mon = Client(api.url, api_key=api.admin_key, model=model_name, version="v1", spool_dir=tmp_path / "spool",
                 samples=SamplePolicy(rate=1.0, max_side=50))  # fmt: skip
    frame = np.random.default_rng(0).integers(0, 255, (80, 100, 3), dtype=np.uint8)  # 100 × 80: shrunk by half
    pid = mon.log_detection([[10, 20, 50, 60], [60, 10, 90, 30]], [0, 1], [0.9, 0.55], image=frame)
    mon.log_detection([[0, 0, 10, 10]], [0], [0.95], image=frame)
    assert mon.flush(60)
    mon.close()
    with api.client(api.create_key(["samples"])) as http:
        sample = next(s for s in http.get(f"/v1/models/{model_name}/samples").json()["samples"] if s["prediction_id"] == pid)
        overlay = http.get(sample["overlay_url"]).json()
        drawn = http.get(sample["image_url"], params={"overlay": "boxes"})
        http.post(f"/v1/models/{model_name}/queues/fp", json={"strategy": "false_positive", "size": 5})
        items = http.get(f"/v1/models/{model_name}/queues/fp").json()["items"]
        coco = http.get(f"/v1/models/{model_name}/queues/fp/export", params={"format": "coco"}).content
    assert (sample["width"], sample["source_width"]) == (50, 100)
    assert [b["box"] for b in overlay["boxes"]] == [[5, 10, 25, 30], [30, 5, 45, 15]]
    assert drawn.headers["content-type"] == "image/png" and Image.open(io.BytesIO(drawn.content)).size[0] >= 256
    # the box just above the 0.5 threshold makes pid the likelier false positive
    assert items[0]["prediction_id"] == pid and items[0]["score"] > items[1]["score"]
    archive = zipfile.ZipFile(io.BytesIO(coco))
    body = json.loads(archive.read("annotations.json"))
    image_id = next(i["id"] for i in body["images"] if i["cvmon_prediction_id"] == pid)
    assert sorted(a["bbox"] for a in body["annotations"] if a["image_id"] == image_id) == [[5, 10, 20, 20], [30, 5, 15, 10]]
    # the labeller fixes the plate box (in the sample's pixels) and drops the car
    body["annotations"] = [a for a in body["annotations"] if a["image_id"] != image_id] + [
        {"id": 99, "image_id": image_id, "category_id": 2, "bbox": [31, 6, 14, 9], "iscrowd": 0}
    ]
    with api.client(api.create_key(["ingest"])) as http:
        answer = http.post(f"/v1/models/{model_name}/labels/import", params={"format": "coco"}, content=json.dumps(body))
    assert answer.json()["accepted"] == 2, answer.text
    from monitor.server.store import tables as t

    with api.db.engine.connect() as conn:
        row = conn.execute(sa.select(t.ground_truth.c.boxes, t.ground_truth.c.box_classes)
                           .where(t.ground_truth.c.model == model_name, t.ground_truth.c.prediction_id == pid)).one()  # fmt: skip
    assert np.frombuffer(row.boxes, "<f4").tolist() == [62, 12, 90, 30]  # back in the model's pixels
    assert np.frombuffer(row.box_classes, "<i4").tolist() == [1]


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        pytest.param([], 422, id="not-an-object"),
        pytest.param({"action": "ANNOTATION_CREATED"}, 422, id="no-task"),
        pytest.param({"action": "ANNOTATION_CREATED", "task": {"data": {}}, "annotation": {}}, 422, id="not-ours"),
        pytest.param({"action": "ANNOTATION_CREATED", "task": {"data": {"prediction_id": "p"}},
                      "annotation": {"result": [{"type": "choices", "value": {"choices": ["unicorn"]}}]}}, 422, id="bad-class"),
        pytest.param({"action": "TASKS_DELETED"}, 200, id="other-action"),
    ],
)  # fmt: skip
def test_bad_webhooks_get_a_clear_4xx(api: Any, model_name: str, payload: Any, status: int) -> None:
    register(api, model_name)
    with api.admin() as http:
        answer = http.post(f"/v1/models/{model_name}/labels/label-studio", json=payload)
    assert answer.status_code == status, answer.text


def test_queue_strategies_need_the_right_task(loop: dict[str, Any]) -> None:
    api, model = loop["api"], loop["model"]
    with api.client(loop["viewer"]) as http:
        answer = http.post(f"/v1/models/{model}/queues/x", json={"strategy": "false_positive"})
        assert answer.status_code == 422 and "detection" in answer.json()["detail"]
        answer = http.post(f"/v1/models/{model}/queues/x", json={"budgets": {"unicorn": 3}})
        assert answer.status_code == 422 and "unicorn" in answer.json()["detail"]
        per_class = http.post(f"/v1/models/{model}/queues/x", json={"size": 12, "per_class": 2}).json()
        assert per_class["size"] == 6  # three classes, two each
        assert http.get(f"/v1/models/{model}/queues/nope/export").status_code == 404
        assert http.delete(f"/v1/models/{model}/queues/x").status_code == 204
        assert http.get(f"/v1/models/{model}/queues").json()["queues"] == []


def test_the_label_studio_config_matches_the_model(loop: dict[str, Any]) -> None:
    with loop["api"].client(loop["viewer"]) as http:
        config = http.get(f"/v1/models/{loop['model']}/label-studio/config").text
    root = ET.fromstring(config)
    assert [c.get("value") for c in root.iter("Choice")] == CLASSES and root.find("Choices").get("name") == "label"  # type: ignore[union-attr]

