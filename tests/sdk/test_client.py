"""The SDK's behaviour with a scripted transport: the caller's contract (never blocks, raises
only for caller mistakes), 413 splitting, configuration errors, async use, the public surface."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import types

import numpy as np
import pytest

import monitor.sdk
from monitor.errors import WireError
from monitor.sdk import Client, MockTransport, Request, Response
from tests.sdk.conftest import ok

P = np.array([0.7, 0.2, 0.1], dtype=np.float32)


def make(handler, tmp_path, **kwargs) -> Client:  # type: ignore[no-untyped-def]
    options = {"model": "m", "version": "v1", "classes": 3, "spool_dir": tmp_path / "spool", "flush_interval": 0.02,
               "retry_deadline": 0.2, "backoff_base": 0.01, "backoff_max": 0.05, "exit_timeout": 0}  # fmt: skip
    options.update(kwargs)
    return Client("http://cvmon.invalid:8000", transport=MockTransport(handler), **options)


class Recorder:
    """A server stand-in: stores accepted ids, can answer a scripted status first."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.ids: list[str] = []

    def __call__(self, request: Request) -> Response:
        records = request.records()
        with self.lock:
            self.requests.append(request)
            self.ids += [r["prediction_id"] for r in records]
        return ok(len(records))


def test_public_names_are_sorted_and_complete():
    public = sorted(n for n, v in vars(monitor.sdk).items() if not n.startswith("_") and not isinstance(v, types.ModuleType))
    assert monitor.sdk.__all__ == sorted(monitor.sdk.__all__) == public


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda c: c.log_classification([0.5, 0.5]), "3 classes", id="wrong-class-count"),
        pytest.param(lambda c: c.log_classification([np.nan, 0.5, 0.5]), "sum", id="nan-probability"),
        pytest.param(lambda c: c.log_classification([2.0, -1.0, 3.0]), "logits", id="logits"),
        pytest.param(lambda c: c.log_classification(np.full((2, 3), 1 / 3)), "1-D", id="batch-in-one-call"),
        pytest.param(lambda c: c.log_classification(P, embedding=[1.0, np.inf]), "NaN or infinity", id="inf-embedding"),
        pytest.param(lambda c: c.log_classification(P, latency_ms=float("nan")), "latency_ms", id="nan-latency"),
        pytest.param(lambda c: c.log_detection([[0, 0, 1, 1]], [0, 1], [0.5, 0.4]), "lengths differ", id="box-lengths"),
        pytest.param(lambda c: c.log_detection([[0, 0, 1]], [0], [0.5]), "(n, 4)", id="box-shape"),
        pytest.param(lambda c: c.log_ground_truth("x"), "needs label", id="empty-ground-truth"),
    ],
)
def test_caller_mistakes_raise_at_once(tmp_path, call, message):
    mon = make(Recorder(), tmp_path)
    with pytest.raises(ValueError, match=message):
        call(mon)
    assert isinstance(WireError("x"), ValueError)
    mon.close()


def test_the_caller_may_mutate_its_arrays_after_logging(tmp_path):
    server = Recorder()
    mon = make(server, tmp_path)
    probs, emb = P.copy(), np.ones(4, np.float32)
    mon.log_classification(probs, embedding=emb)
    probs[:] = [0.0, 0.0, 1.0]
    emb[:] = 7
    assert mon.flush(10)
    (record,) = server.requests[0].records()
    from monitor.wire import decode_array

    np.testing.assert_array_equal(decode_array(record["probabilities"], field="p", max_len=3), P)
    np.testing.assert_array_equal(decode_array(record["embedding"], field="e", max_len=4), np.ones(4))
    mon.close()


def test_log_calls_never_block_while_the_server_hangs(tmp_path):
    release = threading.Event()
    hung = threading.Event()

    def hanging(request: Request) -> Response:
        hung.set()
        release.wait(60)
        return ok(len(request.records()))

    mon = make(hanging, tmp_path, max_queue=1_000, batch_size=100)
    try:
        mon.log_classification(P)
        assert hung.wait(10)
        # The sender is stuck inside a request: 20 000 more calls must all return.
        ids = [mon.log_classification(P) for _ in range(20_000)]
        stats = mon.stats()
        assert len(set(ids)) == 20_000
        assert stats.queued <= 1_000
        assert stats.dropped >= 20_000 - 1_000 - 100
    finally:
        release.set()
        mon.close()


def test_too_large_batches_are_split_until_they_fit(tmp_path):
    server = Recorder()

    def limited(request: Request) -> Response:
        if len(request.records()) > 30:
            return Response(413, b'{"detail": "request body is over the limit"}')
        return server(request)

    mon = make(limited, tmp_path, batch_size=200, flush_interval=10)
    ids = [mon.log_classification(P) for _ in range(200)]
    assert mon.flush(10)
    assert sorted(server.ids) == sorted(ids)  # each once: halves that fit are not resent
    assert all(len(r.records()) <= 30 for r in server.requests)
    assert mon.stats().sent == 200 and mon.stats().dropped == 0
    mon.close()


def test_a_rejected_key_keeps_the_data_and_says_so(tmp_path, caplog):
    server = Recorder()
    answers = iter([401, 403])

    def key_fixed_later(request: Request) -> Response:
        status = next(answers, 200)
        if status != 200:
            return Response(status, json.dumps({"detail": "invalid API key"}).encode())
        return server(request)

    mon = make(key_fixed_later, tmp_path)
    with caplog.at_level(logging.ERROR, logger="monitor.sdk"):
        ids = [mon.log_classification(P) for _ in range(50)]
        assert mon.flush(10)
    assert sorted(server.ids) == sorted(ids)
    stats = mon.stats()
    assert stats.dropped == 0 and stats.rejected == 0 and stats.retried >= 50
    assert "API key" in caplog.text and "401" in caplog.text
    mon.close()


def test_retry_after_and_server_errors_are_retried(tmp_path):
    server = Recorder()
    answers = iter([Response(503, b"{}", {"retry-after": "0"}), Response(500, b"oops"), Response(429, b"")])

    def flaky(request: Request) -> Response:
        return next(answers, None) or server(request)

    mon = make(flaky, tmp_path, retry_deadline=5)
    ids = [mon.log_classification(P) for _ in range(10)]
    assert mon.flush(10)
    assert sorted(server.ids) == sorted(ids)
    assert mon.stats().retried == 30 and mon.stats().spooled == 0
    mon.close()


def test_timed_records_latency_and_errors(tmp_path):
    server = Recorder()
    mon = make(server, tmp_path)
    with mon.timed(cohort={"camera": "cam-1"}) as rec:
        rec.probabilities = P
    assert rec.latency_ms is not None and rec.latency_ms >= 0
    with pytest.raises(ZeroDivisionError), mon.timed() as failed:
        1 / 0  # noqa: B018
    with pytest.raises(ValueError, match="nothing to log"), mon.timed():
        pass
    assert mon.flush(10)
    records = {r["prediction_id"]: r for req in server.requests for r in req.records()}
    assert records[rec.prediction_id]["cohort"] == {"camera": "cam-1"}
    assert records[failed.prediction_id]["status"] == "error" and "probabilities" not in records[failed.prediction_id]
    mon.close()


def test_async_code_uses_the_client_without_blocking_the_loop(tmp_path):
    server = Recorder()

    async def serve_requests() -> list[str]:
        async with make(server, tmp_path) as mon:
            ids = [mon.log_classification(P) for _ in range(20)]
            assert await mon.aflush(10)
        return ids

    ids = asyncio.run(serve_requests())
    assert sorted(server.ids) == sorted(ids)


def test_numpy_scalars_in_a_cohort_are_sent_and_bad_cohorts_counted(tmp_path):
    server = Recorder()
    mon = make(server, tmp_path)
    good = mon.log_classification(P, cohort={"camera": np.int64(3)})
    mon.log_classification(P, cohort={"camera": object()})
    assert mon.flush(10)
    assert server.ids == [good]
    assert server.requests[0].records()[0]["cohort"] == {"camera": 3}
    assert mon.stats().rejected == 1
    mon.close()


def test_importing_the_sdk_loads_no_http_library_tracing_or_event_loop():
    from tests.test_imports import imported_by

    loaded = imported_by("monitor.sdk")
    assert not {m.split(".")[0] for m in loaded} & {"httpx", "requests", "urllib3", "opentelemetry", "asyncio"}


def test_logging_from_many_threads_delivers_every_record_once(tmp_path):
    server = Recorder()
    mon = make(server, tmp_path)
    ids: list[list[str]] = [[] for _ in range(4)]

    def work(mine: list[str]) -> None:
        mine += [mon.log_classification(P) for _ in range(2_500)]

    threads = [threading.Thread(target=work, args=(mine,)) for mine in ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mon.flush(30)
    logged = [i for mine in ids for i in mine]
    assert len(set(logged)) == 10_000
    assert sorted(server.ids) == sorted(logged)
    mon.close()


def test_close_never_hangs_on_a_stuck_server_and_the_next_process_replays(tmp_path):
    release = threading.Event()

    def hanging(request: Request) -> Response:
        release.wait(60)
        return ok(len(request.records()))

    mon = make(hanging, tmp_path, batch_size=10)
    ids = [mon.log_classification(P) for _ in range(100)]
    try:
        assert not mon.close(timeout=0.5)  # returns although the sender is stuck in a request
        assert mon.stats().spooled == 100  # the request in flight, the open batch and the queue
    finally:
        release.set()
    server = Recorder()
    successor = make(server, tmp_path)
    successor.start()  # adopts the spool, replays it
    assert successor.flush(30)
    assert set(server.ids) == set(ids)
    successor.close()
