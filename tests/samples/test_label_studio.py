"""Label Studio, for real: a queue exported, imported into a running Label Studio (the PyPI package
in its own virtualenv), annotated through its API, and the labels back in cvmon through its
webhook and its JSON export. Plus the payloads it sent, recorded (payloads/), replayed fast."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.sdk import Client, SamplePolicy
from tests.samples import label_studio
from tests.samples.conftest import CLASSES, Store, digit_image, png, register, sample_settings

PAYLOADS = Path(__file__).parent / "payloads"
IN_CI = os.environ.get("CI", "").lower() == "true"


def _labels(api: Any, model: str) -> dict[str, tuple[int, str]]:
    """prediction id -> (label, annotator) of every annotation."""
    from monitor.server.store import tables as t

    a = t.label_annotations.c
    with api.db.engine.connect() as conn:
        rows = conn.execute(sa.select(a.prediction_id, a.label, a.annotator).where(a.model == model)).all()
    return {r.prediction_id: (r.label, r.annotator) for r in rows}


def _cvmon(make_api: Any, model: str, tmp_path: Path, n: int) -> tuple[Any, list[str]]:
    api = make_api(samples=sample_settings(model, Store("local", str(tmp_path / "samples"), {})))
    register(api, model)
    mon = Client(api.url, api_key=api.admin_key, model=model, version="v1", classes=3, spool_dir=tmp_path / "spool",
                 samples=SamplePolicy(rate=1.0, low_confidence=None))  # fmt: skip
    rng = np.random.default_rng(5)
    pids = [mon.log_classification(rng.dirichlet(np.ones(3)), image=png(digit_image(i, 16))) for i in range(n)]
    assert mon.flush(60)
    mon.close()
    return api, pids


def test_recorded_label_studio_payloads_become_ground_truth(make_api: Any, model_name: str, tmp_path: Path) -> None:
    """The webhooks (created, then updated) and the JSON export Label Studio 1.23.2 sent in a real
    run (recorded with a 1×1 image), pointed at this test's prediction."""
    api, (pid,) = _cvmon(make_api, model_name, tmp_path, 1)
    created, updated = json.loads((PAYLOADS / "label-studio-1.23.2-webhooks.json").read_text())
    export = json.loads((PAYLOADS / "label-studio-1.23.2-export.json").read_text())
    for body in (created, updated, *export):
        task = body.get("task", body)
        task["data"].update(prediction_id=pid, model=model_name)
    ingest = api.create_key(["ingest"], [model_name])
    with api.client(ingest) as http:
        url = f"/v1/models/{model_name}/labels/label-studio"
        assert http.post(url, json=updated).json()["accepted"] == 1  # out of order: the update first
        assert http.post(url, json=created).json()["duplicates"] == 1  # older: the dog stays out
        assert _labels(api, model_name) == {pid: (CLASSES.index("cat"), "label-studio:1")}
        again = http.post(f"/v1/models/{model_name}/labels/import", params={"format": "label-studio"}, content=json.dumps(export))
        assert again.json()["duplicates"] == 1  # the export holds the same revision


class _Recorder(BaseHTTPRequestHandler):
    received: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


#: The real round trip costs about three minutes of the suite's CPU (a cached install: Label
#: Studio's Django start and migrations) and up to nine on a fresh machine, more than the suite's
#: 15-minute budget allows: `make test-label-studio` runs it (CVMON_TEST_LABEL_STUDIO=1); CI proves
#: the formats with the recorded payloads above, as issue 25 allows.
REAL = os.environ.get("CVMON_TEST_LABEL_STUDIO", "") == "1"


@pytest.mark.slow
@pytest.mark.skipif(not REAL, reason="a real Label Studio: make test-label-studio (CVMON_TEST_LABEL_STUDIO=1)")
@pytest.mark.timeout(2400)  # the first run installs Label Studio (~5 min) and migrates its template (~4)
def test_a_round_trip_through_a_real_label_studio(make_api: Any, model_name: str, tmp_path: Path) -> None:
    api, pids = _cvmon(make_api, model_name, tmp_path, 6)
    viewer, ingest = api.create_key(["samples"], [model_name]), api.create_key(["ingest"], [model_name])
    with api.client(viewer) as http:
        http.post(f"/v1/models/{model_name}/queues/ls", json={"size": 6, "diversity": False})
        tasks = http.get(f"/v1/models/{model_name}/queues/ls/export").json()
        config = http.get(f"/v1/models/{model_name}/label-studio/config").text
    try:
        studio_cm = label_studio.running(tmp_path)
        studio = studio_cm.__enter__()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        if IN_CI:
            raise
        pytest.skip(f"Label Studio {label_studio.VERSION} could not be installed here ({exc}); the recorded payloads test covers the format")
    recorder = HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=recorder.serve_forever, daemon=True).start()
    _Recorder.received = []
    try:
        with studio.http() as ls:
            project = ls.post("/api/projects/", json={"title": f"cvmon {model_name}", "label_config": config}).json()
            hook = {"project": project["id"], "send_payload": True, "send_for_all_actions": False,
                    "actions": ["ANNOTATION_CREATED", "ANNOTATION_UPDATED"]}  # fmt: skip
            answer = ls.post("/api/webhooks/", json={**hook, "url": f"{api.url}/v1/models/{model_name}/labels/label-studio",
                                                     "headers": {"Authorization": f"Bearer {ingest}"}})  # fmt: skip
            assert answer.status_code == 201, answer.text
            ls.post("/api/webhooks/", json={**hook, "url": f"http://127.0.0.1:{recorder.server_port}/"})
            imported = ls.post(f"/api/projects/{project['id']}/import", json=tasks).json()
            assert (imported["task_count"], imported["prediction_count"]) == (6, 6)
            listed = ls.get("/api/tasks/", params={"project": project["id"], "page_size": 100}).json()["tasks"]
            by_pid = {t["data"]["prediction_id"]: t["id"] for t in listed}
            assert sorted(by_pid) == sorted(pids)

            def annotate(pid: str, label: str) -> int:
                result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]
                answer = ls.post(f"/api/tasks/{by_pid[pid]}/annotations/", json={"result": result})
                assert answer.status_code == 201, answer.text
                return int(answer.json()["id"])

            first = annotate(pids[0], "dog")
            annotate(pids[1], "person")
            result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": ["cat"]}}]
            assert ls.patch(f"/api/annotations/{first}/", json={"result": result}).status_code == 200
            want = {pids[0]: (CLASSES.index("cat"), "label-studio:1"), pids[1]: (CLASSES.index("person"), "label-studio:1")}
            assert label_studio.wait_for(lambda: _labels(api, model_name) == want), _labels(api, model_name)
            exported = ls.get(f"/api/projects/{project['id']}/export", params={"exportType": "JSON"}).content
    finally:
        recorder.shutdown()
        recorder.server_close()
        studio_cm.__exit__(None, None, None)
    with api.client(ingest) as http:
        again = http.post(f"/v1/models/{model_name}/labels/import", params={"format": "label-studio"}, content=exported).json()
    assert (again["accepted"], again["duplicates"]) == (0, 2)  # the webhooks delivered these revisions already
    with api.client(viewer) as http:
        status = http.get(f"/v1/models/{model_name}/queues/ls").json()
    assert (status["labelled"], status["pending"]) == (2, 4)
    # the recordings replayed by the fast test still have the shape this Label Studio sends
    recorded = json.loads((PAYLOADS / "label-studio-1.23.2-webhooks.json").read_text())
    live = label_studio.wait_for(lambda: len(_Recorder.received) >= 3 and _Recorder.received)
    assert {b["action"] for b in live} == {"ANNOTATION_CREATED", "ANNOTATION_UPDATED"}
    for body in live:
        assert set(body) == set(recorded[0]) and set(body["annotation"]) >= {"result", "completed_by", "updated_at"}
        assert set(body["task"]["data"]) == set(copy.deepcopy(tasks[0]["data"]))
