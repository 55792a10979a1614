"""SDK → server → object store → browser API, on PostgreSQL and SQLite, with a local directory and
a real S3-compatible server: what the SDK kept is listed, served (logged) and sealed at rest."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.sdk import Client, SamplePolicy
from tests.samples.conftest import Store, digit_image, png, register, sample_settings

pytestmark = pytest.mark.slow  # images through the SDK, OpenCV and the object stores


def _log(mon: Client, n: int) -> list[str]:
    pids = []
    rng = np.random.default_rng(7)
    for i in range(n):
        p = rng.dirichlet(np.ones(3))
        image: Any = digit_image(i, 96) if i % 2 == 0 else png(digit_image(i, 40))
        pids.append(mon.log_classification(p, image=image, cohort={"camera": f"cam-{i % 3}"}, embedding=rng.normal(size=8),
                                           latency_ms=3.0))  # fmt: skip
    return pids


def test_sdk_to_store_and_back(make_api: Any, store: Store, model_name: str, tmp_path: Path) -> None:
    from PIL import Image

    api = make_api(samples=sample_settings(model_name, store))
    register(api, model_name)
    ingest = api.create_key(["ingest"], [model_name])
    mon = Client(api.url, api_key=ingest, model=model_name, version="v1", classes=3, spool_dir=tmp_path / "spool",
                 samples=SamplePolicy(rate=1.0, low_confidence=None, max_side=64))  # fmt: skip
    pids = _log(mon, 6)
    assert mon.flush(60)
    mon.close()
    assert mon.stats().rejected == 0

    viewer = api.create_key(["samples"], [model_name])
    with api.client(viewer) as http:
        listing = http.get(f"/v1/models/{model_name}/samples").json()
        assert sorted(s["prediction_id"] for s in listing["samples"]) == sorted(pids)
        by_pid = {s["prediction_id"]: s for s in listing["samples"]}
        shrunk, kept = by_pid[pids[0]], by_pid[pids[1]]
        # an array of 96×96 was thumbnailed to 64 by the SDK; a 40×40 PNG went as it was
        assert (shrunk["width"], shrunk["source_width"], shrunk["reason"]) == (64, 96, "rate")
        assert (kept["width"], kept["source_width"], kept["media_type"]) == (40, 40, "image/png")
        assert shrunk["version"] == "v1" and shrunk["cohort"] == {"camera": "cam-0"} and shrunk["latency_ms"] == 3.0
        assert abs(sum(shrunk["probabilities"].values()) - 1) < 1e-5 and shrunk["predicted_class"] in ("cat", "dog", "person")
        assert shrunk["faces"] == 0 and not shrunk["exposed"] and shrunk["masking"] == "faces:mask,plates:mask"

        image = http.get(shrunk["image_url"])
        assert image.status_code == 200 and image.headers["cache-control"] == "no-store"
        assert hashlib.sha256(image.content).hexdigest() == shrunk["sha256"]
        assert Image.open(io.BytesIO(image.content)).size == (64, 64)
        # the server stores the PNG re-encoded (metadata stripped): the same pixels
        served = np.asarray(Image.open(io.BytesIO(http.get(kept["image_url"]).content)))
        assert np.array_equal(served, digit_image(1, 40))

        cam = http.get(f"/v1/models/{model_name}/samples", params={"camera": "cam-1"}).json()["samples"]
        assert sorted(s["prediction_id"] for s in cam) == sorted(pids[1::3])
        page = http.get(f"/v1/models/{model_name}/samples", params={"limit": 4}).json()
        rest = http.get(f"/v1/models/{model_name}/samples", params={"limit": 4, "cursor": page["next_cursor"]}).json()
        assert len(page["samples"]) == 4 and len(rest["samples"]) == 2 and rest["next_cursor"] is None
        assert {s["sample_id"] for s in page["samples"]}.isdisjoint(s["sample_id"] for s in rest["samples"])

    # every view is in the access log, by the key that made it
    with api.admin() as http:
        log = http.get(f"/v1/models/{model_name}/sample-access").json()["access"]
    viewer_id = viewer.split("_")[1]
    assert sorted((a["sample_id"], a["action"], a["principal"]) for a in log) == sorted(
        [(shrunk["sample_id"], "view", f"key {viewer_id}"), (kept["sample_id"], "view", f"key {viewer_id}")]
    )

    # at rest: sealed bytes, nothing that looks like an image, nothing equal to what is served
    raw = store.raw_objects()
    assert len(raw) == 6
    assert all(key.startswith(f"{model_name}/") for key in raw)
    for blob in raw.values():
        assert blob[:1] == b"\x01" and b"JFIF" not in blob and b"PNG" not in blob[:16]
    assert image.content not in raw.values() and all(image.content not in blob for blob in raw.values())


def test_a_key_without_the_samples_scope_gets_403(make_api: Any, store: Store, model_name: str, tmp_path: Path) -> None:
    api = make_api(samples=sample_settings(model_name, store))
    register(api, model_name)
    mon = Client(api.url, api_key=api.admin_key, model=model_name, version="v1", spool_dir=tmp_path / "spool",
                 samples=SamplePolicy(rate=1.0))  # fmt: skip
    mon.log_classification([0.5, 0.3, 0.2], image=png(digit_image(0, 24)))
    assert mon.flush(60)
    mon.close()
    with api.admin() as http:  # ingest, read, admin: not samples
        for path in ("samples", "queues"):
            answer = http.get(f"/v1/models/{model_name}/{path}")
            assert answer.status_code == 403 and "samples" in answer.json()["detail"]
    with api.client(api.create_key(["samples"], [model_name])) as http:
        sid = http.get(f"/v1/models/{model_name}/samples").json()["samples"][0]["sample_id"]
    for key in (api.create_key(["read"]), api.create_key(["ingest", "read", "admin"])):
        with api.client(key) as http:
            assert http.get(f"/v1/models/{model_name}/samples/{sid}/image").status_code == 403
            assert http.get(f"/v1/models/{model_name}/samples/{sid}").status_code == 403
    with api.client(api.create_key(["samples"], ["another-model"])) as http:
        answer = http.get(f"/v1/models/{model_name}/samples/{sid}/image")
        assert answer.status_code == 403 and model_name in answer.json()["detail"]
    with api.admin() as http:
        assert http.get(f"/v1/models/{model_name}/sample-access").json()["access"] == []  # refused: never served


def test_samples_of_a_model_that_did_not_opt_in_are_refused(make_api: Any, store: Store, model_name: str) -> None:
    api = make_api(samples=sample_settings("some-other-model", store))
    register(api, model_name)
    body = {"records": [{"prediction_id": "p1", "model": model_name,
                         "image": {"base64": base64.b64encode(png(digit_image(0, 8))).decode()}}]}  # fmt: skip
    with api.admin() as http:
        answer = http.post("/v1/samples", json=body)
    assert answer.status_code == 422
    assert "not enabled for model" in answer.json()["rejected"][0]["error"]


def test_the_browser_answers_clearly_when_samples_are_off(api: Any, model_name: str) -> None:
    register(api, model_name)
    with api.client(api.create_key(["samples"])) as http:
        answer = http.get(f"/v1/models/{model_name}/samples")
    assert answer.status_code == 422 and "samples.models" in answer.json()["detail"]
