"""Resources and annotators through the SDK: checked on the call, sent as the wire format says,
stored by a real server (PostgreSQL and SQLite)."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.errors import WireError
from monitor.sdk import Client, Resources

P = np.array([0.7, 0.2, 0.1], dtype=np.float32)


def client(server, tmp_path) -> Client:  # type: ignore[no-untyped-def]
    return Client(server.url, api_key=server.key, model=server.model, version="v1", classes=3,
                  spool_dir=tmp_path / "spool", flush_interval=0.02, exit_timeout=0)  # fmt: skip


def test_resources_and_annotators_reach_the_database(live_server, tmp_path):
    mon = client(live_server, tmp_path)
    shared = Resources(
        device="NVIDIA L4", batch_size=2, cpu_time_ms=1.5, gpu_utilization_ratio=0.5, gpu_memory_bytes=1 << 30
    )
    a = mon.log_classification(P, latency_ms=9.0, resources=shared)
    b = mon.log_classification(P, latency_ms=9.0, resources=shared)
    c = mon.log_classification(P, resources={"device": "cpu", "batch_size": 1})
    with mon.timed(resources=Resources(device="cpu")) as rec:
        rec.probabilities = P
    mon.log_ground_truth(a, label="dent", annotator="alice")
    mon.log_ground_truth(a, label="ok", annotator="bob", audit=True)
    assert mon.flush(20)
    mon.close()
    rows = {r.prediction_id: r for r in live_server.rows()}
    assert (rows[a].device, rows[a].batch_size, rows[a].gpu_memory_bytes) == ("NVIDIA L4", 2, 1 << 30)
    assert rows[b].device == "NVIDIA L4" and rows[c].device == "cpu" and rows[c].cpu_time_ms is None
    assert rows[rec.prediction_id].device == "cpu" and rows[rec.prediction_id].batch_size is None
    kept = {(r.annotator, r.label, bool(r.audit)) for r in live_server.rows("label_annotations")}
    assert kept == {("alice", 1, False), ("bob", 2, True)}


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: Resources(batch_size=0), "batch_size", id="zero-batch"),
        pytest.param(lambda: Resources(gpu_utilization_ratio=1.5), "gpu_utilization_ratio", id="ratio"),
        pytest.param(lambda: Resources(device=""), "device", id="empty-device"),
        pytest.param(lambda: Resources(cpu_time_ms=float("nan")), "cpu_time_ms", id="nan-cpu"),
    ],
)
def test_impossible_resources_cannot_be_built(make, message):
    with pytest.raises(WireError, match=message):
        make()


def test_caller_mistakes_in_resources_and_annotators_raise_at_once(tmp_path):
    from tests.sdk.test_client import Recorder, make

    mon = make(Recorder(), tmp_path)
    with pytest.raises(WireError, match=r"unknown field resources\.gpu"):
        mon.log_classification(P, resources={"gpu": "yes"})
    with pytest.raises(TypeError, match="resources must be"):
        mon.log_classification(P, resources=["cpu"])
    with pytest.raises(ValueError, match="annotator"):
        mon.log_ground_truth("x", label="dent", annotator="")
    mon.close()


def test_a_shared_resources_object_encodes_the_same_in_every_record():
    """A shared Resources object becomes the same JSON object in every record."""
    from monitor.sdk._records import encode

    shared = Resources(device="cpu", batch_size=4, cpu_time_ms=2.0)
    one = encode({"prediction_id": "a", "probabilities": P, "resources": shared}, "m", "v1", "float32")
    two = encode({"prediction_id": "b", "probabilities": P, "resources": shared}, "m", "v1", "float32")
    assert (
        b'"resources":{"device":"cpu","batch_size":4,"cpu_time_ms":2.0}' in one and one.replace(b'"a"', b'"b"') == two
    )
