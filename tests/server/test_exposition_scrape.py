"""Who may scrape /metrics and what a scrape shows: the least privilege Prometheus needs, and a key
bound to one model learning nothing about another model's traffic."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.server.names import METRIC
from tests.server.records import cls_record, register

pytestmark = pytest.mark.slow  # scrapes of a served cvmon after evaluation

#: Series that sum every model's traffic (per process): hidden from keys bound to models.
SERVICE_WIDE = {"cvmon_ingest_records", "cvmon_http_request_duration_seconds"}


def families(text: str) -> dict[str, list]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_a_metrics_key_scrapes_and_can_do_nothing_else(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        assert c.post("/v1/predictions", json={"records": [cls_record(model_name, "p1")]}).json()["accepted"] == 1
    with api.client(api.create_key(["metrics"])) as c:
        scrape = c.get("/metrics")
        assert scrape.status_code == 200, scrape.text
        assert any(s.labels.get("model") == model_name for s in families(scrape.text)["cvmon_predictions"])
        assert c.get(f"/v1/models/{model_name}").status_code == 403
        assert c.get(f"/v1/models/{model_name}/metrics?window=1h").status_code == 403
        assert c.post("/v1/predictions", json={"records": [cls_record(model_name, "p2")]}).status_code == 403
    # a read key may scrape too; an ingest-only key may not
    with api.client(api.create_key(["read"])) as c:
        assert c.get("/metrics").status_code == 200
    with api.client(api.create_key(["ingest"])) as c:
        refused = c.get("/metrics")
        assert refused.status_code == 403 and "'metrics' or 'read'" in refused.json()["detail"]


def test_a_bound_key_sees_its_models_and_no_service_wide_series(api, model_name):
    other = model_name + "-b"
    with api.admin() as c:
        for name in (model_name, other):
            register(c, name)
        records = [cls_record(other, f"b{i}") for i in range(7)] + [cls_record(model_name, "a0")]
        assert c.post("/v1/predictions", json={"records": records}).json()["accepted"] == 8
    with api.client(api.create_key(["metrics"], models=[model_name])) as c:
        bound = families(c.get("/metrics").text)
    with api.client(api.create_key(["metrics"])) as c:
        everything = families(c.get("/metrics").text)

    assert set(everything) >= SERVICE_WIDE  # the unbound key gets them: they exist
    assert not SERVICE_WIDE & set(bound)
    models = {s.labels["model"] for samples in bound.values() for s in samples if "model" in s.labels}
    assert models == {model_name}
    # every family a bound key sees is one whose samples name their model
    for name, samples in bound.items():
        spec = METRIC.get(name) or METRIC.get(name + "_total")
        assert spec is not None and "model" in spec.labels, name
        assert all(s.labels["model"] == model_name for s in samples)
