"""A key bound to model A can neither read, write nor discover model B, through any endpoint.

The walk enumerates the operations of the served OpenAPI schema, so a route added later is walked
too; a route with a path parameter or a body the walk does not know how to fill fails the test
until it is taught here. Every operation that names a model is called for B (registered, with
data) and for a model that does not exist: the answers must be refusals that look the same, so
the key cannot tell that B exists. Operations that name no model must not mention B.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.server.jobs import run_once
from monitor.server.services import keys as key_store
from testkit.servers import free_port
from tests.faults.servers import serve

pytestmark = pytest.mark.slow  # the hostile suite: every endpoint driven with hostile input, servers per test

SECRET_CLASSES = ["b-secret-class-1", "b-secret-class-2"]
#: Path parameters other than ``model`` and how to fill them (extend when a route adds one).
PATH_SAMPLES = {"report_id": "latest", "sample_id": "0" * 24, "queue": "review"}
#: Bodies for the operations that take one, by (method, path). The walk sends ``{}`` to any other
#: operation with a body: a refusal must still not depend on whether the model exists.
BODIES = {
    ("put", "/v1/models/{model}"): lambda m: {"task": "classification", "classes": ["x", "y"]},
    ("post", "/v1/predictions"): lambda m: {
        "records": [{"prediction_id": "p-iso", "model": m, "model_version": "v1", "predicted_class": 0}]
    },
    ("post", "/v1/ground-truth"): lambda m: {"records": [{"prediction_id": "b0", "model": m, "label": 0}]},
    ("post", "/v1/samples"): lambda m: {
        "records": [{"prediction_id": "b0", "model": m, "timestamp": "2026-01-01T00:00:00Z",
                     "image": {"base64": "iVBORw0KGgo=", "media_type": "image/png"}}]
    },
}
#: Operations without a model in the path that still name one: in their body.
MODEL_IN_BODY = {("post", "/v1/predictions"), ("post", "/v1/ground-truth"), ("post", "/v1/samples")}
#: Operations that name no model at all; they must not mention B.
GLOBAL = {("get", "/v1/models"), ("get", "/metrics"), ("get", "/healthz"), ("get", "/readyz")}


@pytest.fixture
def two_models(api, model_name):
    """Models A (the key's) and B (someone else's), both with predictions, labels and metrics."""
    a, b = f"{model_name}-a", f"{model_name}-b"
    now = datetime.now(UTC)
    ts = (now - timedelta(minutes=20)).isoformat()
    with api.admin() as c:
        for name, classes in ((a, ["x", "y"]), (b, SECRET_CLASSES)):
            assert c.put(f"/v1/models/{name}", json={"task": "classification", "classes": classes}).status_code == 201
            recs = [{"prediction_id": f"{name[-1]}{i}", "model": name, "model_version": f"{name}-v1", "timestamp": ts,
                     "probabilities": [0.9, 0.1], "cohort": {"camera": f"{name}-cam"}} for i in range(4)]  # fmt: skip
            assert c.post("/v1/predictions", json={"records": recs}).json()["accepted"] == 4
            assert (
                c.post(
                    "/v1/ground-truth", json={"records": [{"prediction_id": f"{name[-1]}0", "model": name, "label": 0}]}
                ).status_code
                == 200
            )
    run_once(api.db.engine, api.settings, clock=lambda: now, models=[a, b], jobs=["evaluate"])
    key = api.create_key(["ingest", "read", "admin"], models=[a])
    return a, b, key


def _operations(api) -> list[tuple[str, str, dict[str, Any]]]:
    schema = httpx.get(f"{api.url}/openapi.json").json()
    return [(method, path, op) for path, item in schema["paths"].items() for method, op in item.items()]


def _call(c: httpx.Client, method: str, path: str, op: dict[str, Any], model: str) -> httpx.Response:
    params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
    unknown = params - {"model"} - set(PATH_SAMPLES)
    assert not unknown, (
        f"{method.upper()} {path}: the isolation walk does not know how to fill {sorted(unknown)}; add it to PATH_SAMPLES"
    )
    url = path.format(model=model, **PATH_SAMPLES)
    body = None
    if "requestBody" in op:
        build = BODIES.get((method, path))
        if build is None and "{model}" not in path:
            pytest.fail(
                f"{method.upper()} {path} takes a body but names no model in its path: teach the walk (BODIES, MODEL_IN_BODY)"
            )
        body = build(model) if build else {}
    return c.request(method.upper(), url, json=body)


def _same_refusal(b: httpx.Response, n: httpx.Response, b_name: str, n_name: str) -> None:
    assert b.status_code == n.status_code, (
        f"B answers {b.status_code}, a missing model {n.status_code}: B's existence leaks"
    )
    assert b.text.replace(b_name, "<m>") == n.text.replace(n_name, "<m>")


def test_a_key_bound_to_a_walks_every_operation_without_reaching_b(api, two_models):
    a, b, key = two_models
    missing = b.replace("-b", "-nope")
    walked = []
    with api.client(key) as c:
        assert c.get(f"/v1/models/{a}").status_code == 200  # the key itself works
        for method, path, op in _operations(api):
            walked.append(f"{method.upper()} {path}")
            if "{model}" in path or (method, path) in MODEL_IN_BODY:
                to_b, to_missing = _call(c, method, path, op, b), _call(c, method, path, op, missing)
                assert not to_b.is_success, f"{method.upper()} {path} let the key reach {b}: {to_b.status_code}"
                assert to_b.status_code in (403, 422), f"{method.upper()} {path}: {to_b.status_code} {to_b.text[:200]}"
                _same_refusal(to_b, to_missing, b, missing)
            elif (method, path) in GLOBAL:
                r = _call(c, method, path, op, b)
                assert r.status_code == 200, f"{method.upper()} {path}: {r.status_code}"
                assert b not in r.text and SECRET_CLASSES[0] not in r.text, f"{method.upper()} {path} mentions model B"
            else:
                pytest.fail(f"{method.upper()} {path} names no model: add it to GLOBAL or MODEL_IN_BODY")
    assert {"GET /v1/models/{model}", "PUT /v1/models/{model}", "POST /v1/predictions", "GET /metrics"} <= set(walked)
    with api.admin() as admin:  # nothing the key sent reached B
        info = admin.get(f"/v1/models/{b}").json()
    assert info["classes"] == SECRET_CLASSES
    assert info["counts"] == {"predictions": 4, "ground_truth": 1, "labelled": 1}


def test_metrics_scraped_with_a_bound_key_show_only_its_model(api, two_models):
    a, b, key = two_models
    with api.client(key) as c:
        text = c.get("/metrics").text
    models = {s.labels.get("model") for f in text_string_to_metric_families(text) for s in f.samples} - {None}
    assert models == {a}
    with api.admin() as c:  # the unbound key does see B: the filter is what hides it
        assert b in c.get("/metrics").text


def test_a_bound_key_writing_its_own_model_cannot_touch_b_by_prediction_id(api, two_models):
    a, b, key = two_models
    with api.client(key) as c:
        # B's prediction ids, sent under A: they are A's records, not B's
        r = c.post(
            "/v1/ground-truth", json={"records": [{"prediction_id": f"b{i}", "model": a, "label": 1} for i in range(4)]}
        )
        assert r.status_code == 200
        r = c.post(
            "/v1/predictions",
            json={"records": [{"prediction_id": "b1", "model": a, "model_version": "v", "predicted_class": 0}]},
        )
        assert r.json()["accepted"] == 1
    with api.admin() as admin:
        assert admin.get(f"/v1/models/{b}").json()["counts"] == {"predictions": 4, "ground_truth": 1, "labelled": 1}


# --------------------------------------------------------------------------------------------
# key comparison and key material in logs


def test_secrets_are_compared_with_hmac_compare_digest(api, monkeypatch):
    key = api.create_key(["read"])
    key_id, secret = key_store.parse_key(key)
    calls: list[tuple[bytes, bytes]] = []
    compare = hmac.compare_digest

    def spy(x: bytes, y: bytes) -> bool:
        calls.append((x, y))
        return compare(x, y)

    monkeypatch.setattr(key_store.hmac, "compare_digest", spy)
    wrong = f"cvm_{key_id}_{'A' * 43}"
    with api.db.engine.connect() as conn:
        assert key_store.verify_key(conn, wrong) is None
        assert key_store.verify_key(conn, key) is not None
    assert [y for _, y in calls] == [hashlib.sha256(b"A" * 43).digest(), hashlib.sha256(secret.encode()).digest()]


@pytest.mark.parametrize(
    "near_miss",
    [
        pytest.param(lambda key_id, secret: f"cvm_{key_id}_{'A' * 43}", id="right-id-wrong-secret"),
        pytest.param(lambda key_id, secret: f"cvm_000000000000_{secret}", id="wrong-id-right-secret"),
        pytest.param(lambda key_id, secret: f"xvm_{key_id}_{secret}", id="wrong-prefix"),
        pytest.param(lambda key_id, secret: f"cvm_{key_id}_{secret}x", id="one-character-more"),
        pytest.param(lambda key_id, secret: f"cvm_{key_id}_{secret[:-1]}", id="one-character-less"),
    ],
)
def test_near_miss_keys_are_401(api, near_miss):
    key = api.create_key(["read"])
    key_id, secret = key_store.parse_key(key)
    with api.client(near_miss(key_id, secret)) as c:
        r = c.get("/v1/models")
    assert r.status_code == 401 and r.json() == {"detail": "invalid or revoked API key"}
    with api.client(key) as c:
        assert c.get("/v1/models").status_code == 200


def test_key_material_never_reaches_the_logs(db, model_name, tmp_path, caplog):
    """A real `cvmon serve --log-level debug` (access log on) and this process's loggers at DEBUG,
    through valid, wrong, malformed and revoked keys, and the SDK's error path with a wrong key."""
    from monitor.sdk import Client
    from monitor.server.services.models import register_model
    from monitor.server.store.engine import write_transaction

    if not db.is_pg:
        pytest.skip("one database is enough: the logging does not depend on it")
    with write_transaction(db.engine) as conn:
        register_model(conn, model_name, "classification", ["x", "y"], 0.5, now=datetime.now(UTC))
    good = _key(db, ["ingest", "read", "admin"])
    revoked = _key(db, ["read"])
    with write_transaction(db.engine) as conn:
        key_store.revoke_key(conn, key_store.parse_key(revoked)[0], now=datetime.now(UTC))
    wrong = f"cvm_{key_store.parse_key(good)[0]}_{'B' * 43}"
    malformed = "not-a-key-" + "C" * 40
    tokens = [good, wrong, malformed, revoked]
    port, log = free_port(), tmp_path / "server.log"
    caplog.set_level(logging.DEBUG)
    server = serve(db.url, port, log, log_level="debug", CVMON_KEY_CACHE_SECONDS="0")
    try:
        base = f"http://127.0.0.1:{port}"
        record = {"prediction_id": "k1", "model": model_name, "model_version": "v1", "predicted_class": 0}
        for token in tokens:
            headers = {"Authorization": f"Bearer {token}"}
            for path in ("/v1/models", "/metrics", f"/v1/models/{model_name}", f"/v1/models/{model_name}/metrics"):
                httpx.get(base + path, headers=headers)
            httpx.post(base + "/v1/predictions", headers=headers, json={"records": [record]})
        mon = Client(base, model=model_name, version="v1", api_key=wrong, spool_dir=tmp_path / "spool",
                     retry_deadline=0.3, backoff_base=0.05, trace=False)  # fmt: skip
        mon.log_classification(predicted_class=0)
        assert not mon.flush(timeout=2)
        mon.close(timeout=2)
    finally:
        server.stop()
    text = log.read_text() + caplog.text
    assert "GET /v1/models" in text and "401" in text, "the access log is not on: the test would prove nothing"
    assert "answered 401" in caplog.text  # the SDK said what went wrong, without the key
    for token in tokens:
        assert token not in text
        assert token[-40:] not in text


def _key(db, scopes: list[str]) -> str:
    from monitor.server.store.engine import write_transaction

    with write_transaction(db.engine) as conn:
        _, text = key_store.create_key(conn, scopes=scopes, models=None, name="log-test", now=datetime.now(UTC))
    return text
