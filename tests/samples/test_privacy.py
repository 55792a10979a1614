"""Privacy before storage: a face in a real photograph is found, masked (or the image dropped, or
kept and counted), and not recoverable from what is stored; metadata is stripped."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.sdk import Client, SamplePolicy
from tests.samples.conftest import KEY_A, Store, register, sample_settings

pytestmark = pytest.mark.slow  # images through the SDK, OpenCV and the object stores


def _post(api: Any, model: str, data: bytes, pid: str = "face-1") -> dict[str, Any]:
    body = {"records": [{"prediction_id": pid, "model": model, "image": {"base64": base64.b64encode(data).decode()}}]}
    with api.admin() as http:
        answer = http.post("/v1/samples", json=body)
    assert answer.status_code in (200, 422), answer.text
    return answer.json()  # type: ignore[no-any-return]


def _stored_plaintext(store: Store, model: str) -> list[bytes]:
    """What the store holds, opened here with the key (not through cvmon's read path)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    out = []
    for key, blob in store.raw_objects().items():
        sid = key.rsplit("/", 1)[1].split("-")[0]
        aad = f"cvmon-sample\x00{model}\x00{sid}".encode()
        out.append(AESGCM(base64.b64decode(KEY_A)).decrypt(blob[1:13], blob[13:], aad))
    return out


def _faces(data: bytes) -> list[tuple[int, int, int, int]]:
    from monitor.server.services.privacy import decode, find

    return find(decode(data), "faces")


@pytest.mark.parametrize("method", ["pixelate", "blur"])
def test_a_masked_face_is_not_recoverable_from_the_stored_bytes(
    make_api: Any, model_name: str, tmp_path: Path, face_jpeg: bytes, method: str
) -> None:
    import cv2

    from monitor.server.sample_settings import load_sample_settings

    store = Store("local", str(tmp_path / "samples"), {})
    assert _faces(face_jpeg), "the test photograph must hold a face OpenCV finds"
    samples = load_sample_settings({"models": {model_name: {}}, "store": store.url, "keys": {"a": KEY_A}, "mask": method}, {})
    api = make_api(samples=samples)
    register(api, model_name)
    answer = _post(api, model_name, face_jpeg)
    assert (answer["accepted"], answer["dropped"]) == (1, 0)

    (plain,) = _stored_plaintext(store, model_name)
    assert _faces(plain) == []
    with api.client(api.create_key(["samples"])) as http:
        (sample,) = http.get(f"/v1/models/{model_name}/samples").json()["samples"]
        served = http.get(sample["image_url"]).content
    assert served == plain and sample["faces"] >= 1 and not sample["exposed"]
    # the face is gone, the rest of the picture is still there
    before = cv2.imdecode(np.frombuffer(face_jpeg, np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)
    after = cv2.imdecode(np.frombuffer(plain, np.uint8), cv2.IMREAD_GRAYSCALE).astype(float)
    x, y, w, h = _faces(face_jpeg)[0]
    face = (slice(y + h // 4, y + 3 * h // 4), slice(x + w // 4, x + 3 * w // 4))
    assert np.abs(after[face] - before[face]).mean() > 10
    outside = np.ones(before.shape, bool)
    outside[max(0, y - h // 2) : y + h + h // 2, max(0, x - w // 2) : x + w + w // 2] = False
    assert outside.sum() > before.size / 3 and np.abs(after - before)[outside].mean() < 3


def test_drop_stores_nothing_and_counts_it(make_api: Any, model_name: str, tmp_path: Path, face_jpeg: bytes) -> None:
    store = Store("local", str(tmp_path / "samples"), {})
    api = make_api(samples=sample_settings(model_name, store, faces="drop"))
    register(api, model_name)
    answer = _post(api, model_name, face_jpeg)
    assert (answer["accepted"], answer["dropped"], answer["rejected"]) == (0, 1, [])
    assert store.raw_objects() == {}
    with api.admin() as http:
        metrics = http.get("/metrics").text
    assert f'cvmon_samples_dropped_total{{model="{model_name}",reason="faces"}} 1.0' in metrics


def test_keep_leaves_the_face_and_every_view_is_a_pii_exposure(
    make_api: Any, model_name: str, tmp_path: Path, face_jpeg: bytes
) -> None:
    store = Store("local", str(tmp_path / "samples"), {})
    api = make_api(samples=sample_settings(model_name, store, faces="keep"))
    register(api, model_name)
    # through the SDK: the 600-pixel photograph (512 × 600) is thumbnailed to 512 on the sender thread
    mon = Client(api.url, api_key=api.admin_key, model=model_name, version="v1", spool_dir=tmp_path / "spool",
                 samples=SamplePolicy(rate=1.0))  # fmt: skip
    mon.log_classification([0.2, 0.3, 0.5], image=face_jpeg)
    assert mon.flush(60)
    mon.close()
    with api.client(api.create_key(["samples"])) as http:
        (sample,) = http.get(f"/v1/models/{model_name}/samples").json()["samples"]
        assert sample["exposed"] and sample["masking"] == "faces:keep,plates:mask" and (sample["width"], sample["height"]) == (437, 512)
        for _ in range(2):
            served = http.get(sample["image_url"]).content
        http.get(sample["overlay_url"])  # boxes as JSON: no image, no exposure
    assert _faces(served)
    with api.admin() as http:
        metrics = http.get("/metrics").text
    assert f'cvmon_pii_exposure_events_total{{model="{model_name}"}} 2.0' in metrics
    assert f'cvmon_sample_access_total{{action="view",model="{model_name}"}} 2.0' in metrics


def test_metadata_is_stripped_before_storage(make_api: Any, model_name: str, tmp_path: Path) -> None:
    from PIL import Image

    store = Store("local", str(tmp_path / "samples"), {})
    api = make_api(samples=sample_settings(model_name, store))
    register(api, model_name)
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker Inc"  # Make
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPSInfo: where the picture was taken
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(buffer, format="JPEG", exif=exif)
    assert b"Camera Maker Inc" in buffer.getvalue()
    assert _post(api, model_name, buffer.getvalue())["accepted"] == 1
    (plain,) = _stored_plaintext(store, model_name)
    assert b"Exif" not in plain and b"Camera Maker" not in plain
