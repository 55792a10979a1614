"""Retention of samples per model (rows, objects, orphaned day folders) and of the access log; the
exported counters never go back."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.server.sample_settings import load_sample_settings
from tests.samples.conftest import KEY_A, Store, digit_image, png, register

pytestmark = pytest.mark.slow  # images through the SDK, OpenCV and the object stores


def test_samples_and_access_rows_expire_and_counters_stay(make_api: Any, store: Store, model_name: str) -> None:
    from monitor.server.jobs.retention import expire_samples
    from monitor.server.services.sample_audit import counts
    from monitor.server.services.samples import SampleRuntime, sample_id
    from monitor.server.store import tables as t

    section = {"models": {model_name: {"retention": "2d"}, "*": {"retention": "30d"}}, "store": store.url,
               "store_options": store.options, "keys": {"a": KEY_A}, "audit_retention": "1d"}  # fmt: skip
    samples = load_sample_settings(section, {})
    api = make_api(samples=samples)
    register(api, model_name)
    now = datetime.now(UTC)
    old, recent = now - timedelta(days=5), now - timedelta(hours=1)
    records = [
        {"prediction_id": pid, "model": model_name, "timestamp": ts.isoformat(),
         "image": {"base64": base64.b64encode(png(digit_image(i, 12))).decode()}}
        for i, (pid, ts) in enumerate([("old-1", old), ("old-2", old), ("new", recent)])
    ]  # fmt: skip
    with api.admin() as http:
        assert http.post("/v1/samples", json={"records": records}).json()["accepted"] == 3
    with api.client(api.create_key(["samples"])) as http:
        for sample in http.get(f"/v1/models/{model_name}/samples").json()["samples"]:
            assert http.get(sample["image_url"]).status_code == 200
    runtime = SampleRuntime.from_settings(samples)
    assert runtime is not None
    orphan = f"{model_name}/{old:%Y-%m-%d}/0123456789abcdef01234567-a"  # a put whose row never committed
    runtime.store.put(orphan, b"\x01sealed")
    assert len(store.raw_objects()) == 4

    gone = expire_samples(api.db.engine, runtime, now=now)
    assert (gone["samples"], gone["objects"]) == (2, 3)
    assert [key.rsplit("/", 1)[1].split("-")[0] for key in store.raw_objects()] == [sample_id(model_name, "new")]
    with api.db.engine.connect() as conn:
        assert conn.execute(sa.select(t.samples.c.prediction_id).where(t.samples.c.model == model_name)).scalars().all() == ["new"]
        before = {name: value for m, name, value in counts(conn) if m == model_name}
    assert before == {"stored": 3, "views": 3}

    later = expire_samples(api.db.engine, runtime, now=now + timedelta(days=1, hours=1))
    assert later["sample_access"] >= 3  # the database may hold other tests' models too
    with api.db.engine.connect() as conn:
        assert {name: value for m, name, value in counts(conn) if m == model_name} == before
    with api.admin() as http:
        assert http.get(f"/v1/models/{model_name}/sample-access").json()["access"] == []
        metrics = http.get("/metrics").text
    assert f'cvmon_sample_access_total{{action="view",model="{model_name}"}} 3.0' in metrics
    assert f'cvmon_samples_stored_total{{model="{model_name}"}} 3.0' in metrics
