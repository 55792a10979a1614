"""A live cvmon on its own scratch PostgreSQL database, seeded with real data, for the whole module.

The fuzzing tests register models and send thousands of records; a database of their own keeps
that away from the tests that count every model of the shared test database.
"""

from __future__ import annotations

import base64
import secrets
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from testkit.servers import ThreadServer
from tests.faults.servers import create_key, scratch_database

CLASSES = ["scratch", "dent", "ok"]


@dataclass
class Live:
    url: str
    db_url: str
    admin_key: str
    #: registered and holding predictions, labels and evaluated metrics
    model: str
    detector: str
    engine: Any

    def client(self, key: str | None = None) -> httpx.Client:
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def seed(c: httpx.Client, model: str, detector: str, now: datetime) -> None:
    """Two models with predictions, labels and metrics, so reads return real rows."""
    for name, task in ((model, "classification"), (detector, "detection")):
        assert c.put(f"/v1/models/{name}", json={"task": task, "classes": CLASSES}).status_code in (200, 201)
    ts = (now - timedelta(hours=2)).isoformat()
    preds = [
        {"prediction_id": f"p{i}", "model": model, "model_version": "v1", "timestamp": ts, "latency_ms": 5 + i,
         "probabilities": [0.8, 0.1, 0.1] if i % 2 else [0.1, 0.2, 0.7], "cohort": {"camera": f"cam-{i % 2}"}}
        for i in range(20)
    ]  # fmt: skip
    dets = [
        {"prediction_id": f"d{i}", "model": detector, "model_version": "v1", "timestamp": ts,
         "boxes": [[0, 0, 10, 10]], "box_classes": ["dent"], "box_scores": [0.9]}
        for i in range(10)
    ]  # fmt: skip
    assert c.post("/v1/predictions", json={"records": preds + dets}).json()["accepted"] == 30
    labels = [{"prediction_id": f"p{i}", "model": model, "label": "scratch"} for i in range(15)]
    labels += [
        {"prediction_id": f"d{i}", "model": detector, "boxes": [[0, 0, 10, 11]], "box_classes": ["dent"]}
        for i in range(10)
    ]
    assert c.post("/v1/ground-truth", json={"records": labels}).json()["accepted"] == 25
    # a sample image for each prediction of the first few, and a labelling queue, so the sample
    # browser and the labelling endpoints reach real rows too
    image = base64.b64encode(_png()).decode()
    samples = [{"prediction_id": pid, "model": name, "image": {"base64": image}} for name, pid in
               [(model, f"p{i}") for i in range(15, 20)] + [(detector, f"d{i}") for i in range(3)]]  # fmt: skip
    assert c.post("/v1/samples", json={"records": samples}).json()["accepted"] == 8
    assert c.post(f"/v1/models/{model}/queues/hostile", json={"size": 3}).status_code == 200


def _png() -> bytes:
    import io

    import numpy as np
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def live() -> Iterator[Live]:
    from monitor.server.app import create_app
    from monitor.server.jobs import run_once
    from monitor.server.settings import Settings
    from monitor.server.store.engine import make_engine

    with scratch_database("cvmon_hostile") as url, tempfile.TemporaryDirectory() as tmp:
        from monitor.server.sample_settings import load_sample_settings

        samples = load_sample_settings({"models": {"*": {}}, "store": tmp,
                                        "keys": {"k": base64.b64encode(secrets.token_bytes(32)).decode()}}, {})  # fmt: skip
        settings = Settings(database_url=url, scheduler=False, samples=samples)
        engine = make_engine(url)
        admin = create_key(url, ["ingest", "read", "admin", "samples"])
        server = ThreadServer(create_app(settings)).__enter__()
        try:
            live = Live(server.url, url, admin, "hostile-cls", "hostile-det", engine)
            now = datetime.now(UTC)
            with live.client(admin) as c:
                seed(c, live.model, live.detector, now)
            run_once(engine, settings, clock=lambda: now)
            yield live
        finally:
            server.__exit__()
            engine.dispose()
