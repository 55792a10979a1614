"""Every auth outcome: 401 without a valid key, 403 outside its scope or models."""

from __future__ import annotations

import logging
import time

import pytest

from tests.server.records import cls_record, register

CALLS = [
    pytest.param("ingest", "post", "/v1/predictions", id="post-predictions"),
    pytest.param("ingest", "post", "/v1/ground-truth", id="post-ground-truth"),
    pytest.param("read", "get", "/v1/models/{m}", id="get-model"),
    pytest.param("admin", "put", "/v1/models/{m}", id="put-model"),
]


def _call(client, method: str, path: str, model: str):
    path = path.format(m=model)
    if method == "post":
        body = {"records": [cls_record(model, "x")]} if "predictions" in path else {"records": [{"prediction_id": "x", "model": model, "label": "ok"}]}
        return client.post(path, json=body)
    if method == "put":
        return client.put(path, json={"task": "classification", "classes": ["scratch", "dent", "ok"]})
    return client.get(path)


@pytest.mark.parametrize(("scope", "method", "path"), CALLS)
def test_missing_and_invalid_keys_are_401(api, model_name, scope, method, path):
    with api.client() as anonymous, api.client("cvm_000000000000_" + "x" * 43) as forged, api.client("not-a-key") as garbage:
        for client in (anonymous, forged, garbage):
            r = _call(client, method, path, model_name)
            assert r.status_code == 401, r.text
            assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("scope", "method", "path"), CALLS)
def test_key_without_the_scope_is_403(api, model_name, scope, method, path):
    with api.admin() as c:
        register(c, model_name)
    others = [s for s in ("ingest", "read", "admin") if s != scope]
    with api.client(api.create_key(others)) as c:
        r = _call(c, method, path, model_name)
    assert r.status_code == 403
    assert f"lacks the '{scope}' scope" in r.json()["detail"]


@pytest.mark.parametrize(("scope", "method", "path"), CALLS)
def test_key_bound_to_another_model_is_403(api, model_name, scope, method, path):
    other = model_name + "-other"
    with api.admin() as c:
        register(c, model_name)
        register(c, other)
    with api.client(api.create_key(["ingest", "read", "admin"], models=[other])) as c:
        r = _call(c, method, path, model_name)
        allowed = _call(c, method, path, other)
    assert r.status_code == 403 and model_name in r.json()["detail"]
    assert allowed.status_code in (200, 201), allowed.text


def test_a_batch_touching_a_forbidden_model_stores_nothing(api, model_name):
    other = model_name + "-b"
    with api.admin() as c:
        register(c, model_name)
        register(c, other)
    with api.client(api.create_key(["ingest", "read"], models=[model_name])) as c:
        r = c.post("/v1/predictions", json={"records": [cls_record(model_name, "a"), cls_record(other, "b")]})
        assert r.status_code == 403
        assert c.get(f"/v1/models/{model_name}").json()["counts"]["predictions"] == 0


def test_model_list_shows_only_the_keys_models(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        register(c, model_name + "-hidden")
    with api.client(api.create_key(["read"], models=[model_name])) as c:
        assert c.get("/v1/models").json() == {"models": [model_name]}


def test_revoked_key_stops_working(make_api, model_name):
    api = make_api(key_cache_seconds=0)
    key = api.create_key(["read"])
    with api.admin() as c:
        register(c, model_name)
    from datetime import UTC, datetime

    from monitor.server.services.keys import parse_key, revoke_key
    from monitor.server.store.engine import write_transaction

    with api.client(key) as c:
        assert c.get(f"/v1/models/{model_name}").status_code == 200
        with write_transaction(api.db.engine) as conn:
            assert revoke_key(conn, parse_key(key)[0], now=datetime.now(UTC))
        time.sleep(0.01)
        assert c.get(f"/v1/models/{model_name}").status_code == 401


def test_auth_disabled_serves_without_a_key_and_warns(make_api, model_name, caplog):
    with caplog.at_level(logging.WARNING, logger="cvmon"):
        api = make_api(auth_disabled=True)
    assert any("authentication is DISABLED" in r.getMessage() for r in caplog.records)
    with api.client() as c:
        register(c, model_name)
        assert c.post("/v1/predictions", json={"records": [cls_record(model_name, "a")]}).json()["accepted"] == 1


def test_health_endpoints_need_no_key(api):
    with api.client() as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        assert c.get("/readyz").json()["status"] == "ready"
