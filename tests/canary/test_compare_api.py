"""The compare endpoint, Flagger's webhook, the recorded decisions and `cvmon canary check`, on a
real server over both databases."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from monitor.server.rollout_config import CanaryConfig, CanaryPolicy
from tests.canary import traffic

pytestmark = pytest.mark.slow  # comparisons over served traffic on both databases


def _seed(api: Any, model: str, candidate: traffic.Version, n: int = 1500, labelled: float = 0.0) -> None:
    start = traffic.start_time()
    with api.admin() as client:
        traffic.register(client, model)
        traffic.send(client, *traffic.records(model, traffic.Version("v1"), n, start=start, seed=1, labelled=labelled))
        traffic.send(client, *traffic.records(model, candidate, n, start=start, seed=2, labelled=labelled, mirror_of=1))


def test_shifted_confidences_fail_before_any_label(api, model_name):
    _seed(api, model_name, traffic.Version("v2", confidence_a=2.0))
    with api.admin() as client:
        r = client.get(f"/v1/models/{model_name}/compare", params={"baseline": "v1", "candidate": "v2"})
        assert r.status_code == 200, r.text
        body = r.json()
        metrics = {m["metric"]: m for m in body["metrics"]}
        assert body["verdict"] == "fail" and body["decision"] == -1
        assert metrics["confidence"]["decision"] == "fail" and metrics["confidence"]["low"] > 0.1
        assert metrics["accuracy"]["labels_candidate"] == 0 and metrics["accuracy"]["decision"] == "inconclusive"
        assert metrics["agreement"]["decision"] is None and metrics["agreement"]["samples_candidate"] == 1500
        scrape = client.get("/metrics").text
        events = client.get(f"/v1/models/{model_name}/automation/events").json()["events"]
    line = f'cvmon_canary_decision{{baseline="v1",candidate="v2",metric="overall",model="{model_name}"}} -1.0'
    assert line in scrape
    assert f'cvmon_canary_decision{{baseline="v1",candidate="v2",metric="agreement",model="{model_name}"}}' not in scrape
    assert [e["type"] for e in events] == ["canary.verdict"]
    assert events[0]["payload"]["data"]["failed"] == ["confidence"]


def test_identical_versions_are_not_failed_and_labels_count(api, model_name):
    _seed(api, model_name, traffic.Version("v2"), labelled=0.5)
    with api.admin() as client:
        body = client.get(f"/v1/models/{model_name}/compare", params={"baseline": "v1", "candidate": "v2"}).json()
    metrics = {m["metric"]: m for m in body["metrics"]}
    assert body["verdict"] != "fail"
    assert 600 < metrics["accuracy"]["labels_candidate"] < 900
    assert metrics["accuracy"]["low"] < metrics["accuracy"]["difference"] < metrics["accuracy"]["high"]
    assert metrics["agreement"]["candidate"] == pytest.approx(0.82, abs=0.05)  # two 90 % models on the same inputs


def test_errors_and_scopes(make_api, model_name):
    api = make_api()
    _seed(api, model_name, traffic.Version("v2"), n=50)
    other = api.create_key(["read"], models=["another-model"])
    ingest_only = api.create_key(["ingest"])
    params = {"baseline": "v1", "candidate": "v2"}
    url = f"/v1/models/{model_name}/compare"
    with api.client() as anonymous:
        assert anonymous.get(url, params=params).status_code == 401
    with api.client(other) as client:
        assert client.get(url, params=params).status_code == 403
    with api.client(ingest_only) as client:
        assert client.get(url, params=params).status_code == 403
    with api.admin() as client:
        assert client.get(url, params={"baseline": "v1", "candidate": "v9"}).status_code == 404
        assert client.get("/v1/models/nope/compare", params=params).status_code == 404
        assert client.get(url, params={"baseline": "v1", "candidate": "v1"}).status_code == 422
        assert client.get(url, params={"baseline": "v1"}).status_code == 422
        assert client.get(url, params={**params, "since": "0001-01-01T00:00:00+01:00"}).status_code == 422
        assert client.get(url, params={**params, "since": "2999-01-01T00:00:00Z"}).status_code == 422
        # too few predictions: nothing decides
        assert client.get(url, params=params).json()["verdict"] == "inconclusive"


def test_flagger_webhook_answers_with_the_verdict(make_api, model_name):
    api = make_api(canary=CanaryConfig(CanaryPolicy(gates={"confidence": 0.1, "accuracy": None, "error_rate": None,
                                                          "latency_p95": None, "class_mix": None})))  # fmt: skip
    _seed(api, model_name, traffic.Version("v2", confidence_a=2.0))
    key = api.create_key(["read"], models=[model_name])
    url = f"/v1/models/{model_name}/canary/flagger"
    meta = {"baseline": "v1", "candidate": "v2"}
    payload = {"name": "shelf", "namespace": "prod", "phase": "Progressing", "checksum": "x", "metadata": meta}
    with api.client() as client:
        assert client.post(url, json=payload).status_code == 401
        r = client.post(url, json={**payload, "metadata": {**meta, "api_key": key}})
        assert r.status_code == 412 and r.json()["verdict"] == "fail"
        assert client.post(url, json={**payload, "metadata": {"baseline": "v1", "api_key": key}}).status_code == 422
        assert client.post(url, json={**payload, "metadata": {**meta, "api_key": "cvm_wrong"}}).status_code == 401
        assert client.post(url, json={**payload, "metadata": {**meta, "api_key": key, "since": "yesterday"}}).status_code == 422
    with api.client(key) as client:  # the Authorization header works too
        r = client.post(url, json={**payload, "metadata": {"baseline": "v1", "candidate": "v2"}})
        assert r.status_code == 412


def test_flagger_inconclusive_is_202_or_425_when_strict(make_api, model_name):
    api = make_api()
    _seed(api, model_name, traffic.Version("v2"), n=40)
    url = f"/v1/models/{model_name}/canary/flagger"
    with api.admin() as client:
        assert client.post(url, json={"metadata": {"baseline": "v1", "candidate": "v2"}}).status_code == 202
        assert client.post(url, json={"metadata": {"baseline": "v1", "candidate": "v2", "strict": "true"}}).status_code == 425


def test_canary_check_exit_codes(make_api, model_name, monkeypatch, tmp_path):
    from monitor.server.cli._root import cli

    api = make_api()
    _seed(api, model_name, traffic.Version("v2", confidence_a=2.0))
    runner = CliRunner()
    args = ["canary", "check", "--model", model_name, "--baseline", "v1", "--candidate", "v2"]
    # over HTTP
    result = runner.invoke(cli, [*args, "--url", api.url, "--api-key", api.admin_key])
    assert result.exit_code == 1, result.output
    assert "FAIL: " in result.output and "confidence fail" in result.output
    # straight from the database of the settings
    monkeypatch.setenv("CVMON_DATABASE_URL", api.db.url)
    monkeypatch.delenv("CVMON_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(cli, [*args, "--json"])
    assert result.exit_code == 1, result.output
    assert '"verdict": "fail"' in result.output
    result = runner.invoke(cli, ["canary", "check", "--model", model_name, "--baseline", "v1", "--candidate", "v9"])
    assert result.exit_code == 3 and "has sent no prediction" in result.output
    result = runner.invoke(cli, [*args[:-2], "--candidate", "v2", "--url", api.url, "--api-key", "cvm_bad"])
    assert result.exit_code == 3 and "401" in result.output
    # inconclusive, with --wait giving up at its timeout
    _seed(api, model_name + "-b", traffic.Version("v2"), n=40)
    result = runner.invoke(cli, ["canary", "check", "--model", model_name + "-b", "--baseline", "v1", "--candidate", "v2",
                                 "--wait", "--interval", "1", "--timeout", "2.5"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert result.output.count(" poll ") >= 2  # a line per poll until the timeout


def _detections(
    model: str, version: str, n: int, *, jitter: float, seed: int, start: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Images with 1-3 objects, one a second from ``start``; the version's boxes are the truth
    moved by up to ``jitter`` pixels."""
    rng = np.random.default_rng(seed)
    preds, labels = [], []
    for i in range(n):
        k = int(rng.integers(1, 4))
        xy = rng.uniform(0, 400, (k, 2))
        truth = np.hstack([xy, xy + rng.uniform(30, 90, (k, 2))])
        boxes = truth + rng.uniform(-jitter, jitter, truth.shape)
        classes = [traffic.CLASSES[int(c)] for c in rng.integers(0, 3, k)]
        pid = f"{version}-{i}"
        ts = (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        preds.append({"prediction_id": pid, "model": model, "model_version": version, "timestamp": ts, "latency_ms": 30.0,
                      "boxes": boxes.tolist(), "box_classes": classes, "box_scores": rng.uniform(0.5, 1, k).tolist()})  # fmt: skip
        labels.append({"prediction_id": pid, "model": model, "boxes": truth.tolist(), "box_classes": classes})
    return preds, labels


def test_detection_models_are_judged_on_map_with_bootstrap_intervals(api, model_name):
    with api.admin() as client:
        traffic.register(client, model_name, task="detection")
        # both versions from the same second: the comparison spans the time both were live
        start = traffic.start_time()
        traffic.send(client, *_detections(model_name, "v1", 80, jitter=2.0, seed=1, start=start))
        traffic.send(client, *_detections(model_name, "v2", 80, jitter=12.0, seed=2, start=start))
        body = client.get(f"/v1/models/{model_name}/compare", params={"baseline": "v1", "candidate": "v2"}).json()
    metrics = {m["metric"]: m for m in body["metrics"]}
    assert sorted(metrics) == ["error_rate", "latency_p95", "map"]
    m = metrics["map"]
    assert m["labels_baseline"] == m["labels_candidate"] == 80
    assert m["baseline"] > m["candidate"]  # looser boxes, lower mAP@[.5:.95]
    assert m["low"] < m["difference"] < m["high"] and m["high"] - m["low"] > 0.01
    assert m["decision"] in ("fail", "inconclusive")
