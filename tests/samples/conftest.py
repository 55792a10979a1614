"""Fixtures for samples: a real S3-compatible server (moto's server mode, a subprocess on a free
port), sample stores (a local directory, that server), encryption keys, a real face photograph
and servers with samples enabled."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from testkit.servers import free_port
from tests.conftest import Api

CLASSES = ["cat", "dog", "person"]
KEY_A = base64.b64encode(bytes(range(32))).decode()
KEY_B = base64.b64encode(bytes(range(100, 132))).decode()


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def options(self) -> dict[str, Any]:
        return {"endpoint": self.endpoint, "access_key_id": "testing", "secret_access_key": "testing",
                "region": "us-east-1", "allow_http": True}  # fmt: skip

    def create_bucket(self) -> str:
        import boto3

        name = f"cvmon-{uuid.uuid4().hex[:12]}"
        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")  # fmt: skip
        client.create_bucket(Bucket=name)
        return name

    def raw_objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of the bucket as the server holds it (read with boto3, not through cvmon)."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                              aws_secret_access_key="testing", region_name="us-east-1")  # fmt: skip
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return out


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto in server mode: a real S3 HTTP API on loopback (no AWS involved)."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        yield S3Server(endpoint)
    finally:
        proc.terminate()
        proc.wait(30)


@dataclass(frozen=True)
class Store:
    """Where a test's samples go: ``url`` and ``options`` for settings, and a way to read the raw
    objects behind cvmon's back."""

    kind: str
    url: str
    options: dict[str, Any]
    _s3: S3Server | None = None
    _bucket: str = ""

    def raw_objects(self) -> dict[str, bytes]:
        """Object key (relative to the store's root) -> the bytes as stored."""
        if self._s3 is not None:  # keys under the store's prefix (s3://bucket/cvmon), which must hold them all
            found = self._s3.raw_objects(self._bucket)
            assert all(key.startswith("cvmon/") for key in found)
            return {key.removeprefix("cvmon/"): blob for key, blob in found.items()}
        root = Path(self.url)
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """Each test using it runs with a local directory and with the S3-compatible server."""
    if request.param == "local":
        return Store("local", str(tmp_path / "samples"), {})
    s3: S3Server = request.getfixturevalue("s3_server")
    bucket = s3.create_bucket()
    return Store("s3", f"s3://{bucket}/cvmon", s3.options(), s3, bucket)


def sample_settings(model: str, store: Store, **policy: Any) -> Any:
    from monitor.server.sample_settings import load_sample_settings

    section = {"models": {model: policy or {}}, "store": store.url, "store_options": store.options,
               "keys": {"a": KEY_A}}  # fmt: skip
    return load_sample_settings(section, {})


@pytest.fixture(scope="session")
def face_jpeg() -> bytes:
    """A real photograph with a face: Grace Hopper, as matplotlib ships it (sample_data). OpenCV's
    wheel ships no test image; this one is found by its frontal-face cascade."""
    from matplotlib import cbook

    return Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).read_bytes()


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def digit_image(seed: int, size: int = 32) -> np.ndarray:
    """A small grey-level image without faces (like the demo's digits)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 255, (size, size), dtype=np.uint8)


def register(api: Api, model: str, task: str = "classification", classes: list[str] | None = None) -> None:
    with api.admin() as http:
        answer = http.put(f"/v1/models/{model}", json={"task": task, "classes": classes or CLASSES})
        assert answer.status_code in (200, 201), answer.text

