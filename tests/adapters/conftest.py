"""Adapters log through a real SDK client; here its transport records what would be sent."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from monitor.sdk import Client, MockTransport, Request, Response
from monitor.wire import decode_array
from tests.sdk.conftest import ok


class Sent:
    """Records the SDK sent, by prediction id, with arrays decoded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.records: dict[str, dict[str, Any]] = {}

    def __call__(self, request: Request) -> Response:
        records = request.records()
        with self._lock:
            for r in records:
                for key in ("probabilities", "embedding", "boxes", "box_scores"):
                    if key in r:
                        r[key] = decode_array(r[key], field=key, max_len=100_000)
                if "box_classes" in r:
                    r["box_classes"] = decode_array(r["box_classes"], field="box_classes", max_len=1000, kind="int")
                self.records[r["prediction_id"]] = r
        return ok(len(records))


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def mon(sent: Sent, tmp_path: Any) -> Iterator[Client]:
    client = Client("http://cvmon.invalid", model="digits", version="v1", spool_dir=tmp_path / "spool",
                    transport=MockTransport(sent), flush_interval=0.02, exit_timeout=0)  # fmt: skip
    yield client
    client.close()


@pytest.fixture(scope="session")
def digits() -> Any:
    from monitor.server.demo.model import train

    return train(hidden=16)


def flat(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32)
