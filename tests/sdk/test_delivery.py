"""The SDK against a real cvmon server (PostgreSQL and SQLite): exactly-once delivery through
outages, process death and forks; rejected records; trace ids; embedding sampling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from monitor.sdk import Client, embedding_sampled
from tests.sdk.conftest import LateServer

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

ROOT = Path(__file__).resolve().parents[2]
P = np.array([0.7, 0.2, 0.1], dtype=np.float32)


def client(server: LateServer, spool: Path, **kwargs: object) -> Client:
    options: dict[str, object] = {
        "api_key": server.key, "model": server.model, "version": "v1", "classes": 3, "spool_dir": spool,
        "flush_interval": 0.05, "retry_deadline": 0.3, "backoff_base": 0.05, "backoff_max": 0.3, "exit_timeout": 0,
    }  # fmt: skip
    options.update(kwargs)
    return Client(server.url, **options)  # type: ignore[arg-type]


def wait_for(condition, what: str, limit: float = 120.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_records_logged_while_server_is_down_arrive_once_when_it_starts(late_server, tmp_path):
    mon = client(late_server, tmp_path / "spool")
    try:
        ids = [mon.log_classification(P, latency_ms=3.0, cohort={"camera": f"cam-{i % 4}"}) for i in range(10_000)]
        wait_for(lambda: mon.stats().spooled == 10_000, "every record to be spooled")
        assert mon.stats().sent == 0
        late_server.start()
        assert mon.flush(timeout=120)
        stats = mon.stats()
    finally:
        mon.close()
    stored = late_server.prediction_ids()
    assert len(stored) == len(set(stored)) == 10_000
    assert set(stored) == set(ids)
    assert stats.dropped == 0 and stats.rejected == 0 and stats.spool_records == 0
    assert stats.sent >= 10_000


_LOGGER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from monitor.sdk import Client

    url, key, model, spool, mode = sys.argv[1:]
    mon = Client(url, api_key=key, model=model, version="v1", spool_dir=spool, flush_interval=0.05,
                 retry_deadline=0.3, backoff_base=0.05, backoff_max=0.3, exit_timeout=0)
    if mode == "log":
        p = np.array([0.7, 0.2, 0.1], dtype=np.float32)
        for i in range(10_000):
            mon.log_classification(p, prediction_id=f"r{i}", cohort={"camera": "cam-1"})
        while mon.stats().spooled < 10_000:
            time.sleep(0.05)
        print("spooled", flush=True)
        time.sleep(600)  # SIGKILLed here: no atexit, no close
    else:
        print(mon.flush(timeout=120), mon.stats(), flush=True)
        mon.close()
    """
)


def test_spool_of_a_killed_process_is_replayed_once_by_the_next(late_server, tmp_path):
    spool = tmp_path / "spool"
    args = [sys.executable, "-c", _LOGGER, late_server.url, late_server.key, late_server.model, str(spool)]
    first = subprocess.Popen([*args, "log"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout is not None
        assert first.stdout.readline().strip() == "spooled"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        if first.stdout is not None:
            first.stdout.close()
    assert late_server.prediction_ids() == []
    late_server.start()
    second = subprocess.run([*args, "replay"], check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert second.stdout.startswith("True"), second.stdout + second.stderr
    stored = late_server.prediction_ids()
    assert len(stored) == len(set(stored)) == 10_000
    assert set(stored) == {f"r{i}" for i in range(10_000)}
    # the dead process's directory was adopted and, once empty, removed with the replayer's
    assert list(spool.iterdir()) == []


def test_full_spool_drops_the_oldest_and_counts_them(late_server, tmp_path):
    mon = client(late_server, tmp_path / "spool", batch_size=100, spool_max_records=1_000)
    try:
        ids = [mon.log_classification(P, prediction_id=f"r{i:05d}") for i in range(5_000)]
        wait_for(lambda: mon.stats().spooled == 5_000, "every record to pass through the spool")
        full = mon.stats()
        assert full.spool_records == 1_000
        assert full.dropped == 4_000
        late_server.start()
        assert mon.flush(timeout=120)
    finally:
        mon.close()
    stored = sorted(late_server.prediction_ids())
    assert stored == ids[-1_000:]  # the newest thousand survive


def test_rejected_records_are_counted_and_not_retried(live_server, tmp_path):
    mon = client(live_server, tmp_path / "spool", classes=None)
    try:
        good = [mon.log_classification(P) for _ in range(10)]
        # Sums to 1 (passes the cheap local check) but is not a probability vector: the server
        # rejects these records, and resending them would never help.
        bad = [mon.log_classification(np.array([1.5, -0.25, -0.25], np.float32)) for _ in range(5)]
        wrong_size = mon.log_classification(np.array([0.5, 0.5], np.float32))
        assert mon.flush(timeout=60)
        stats = mon.stats()
    finally:
        mon.close()
    assert sorted(live_server.prediction_ids()) == sorted(good)
    assert stats.rejected == 6 and stats.retried == 0 and stats.sent == 10
    assert wrong_size not in bad


def test_a_forked_child_gets_its_own_sender_and_ids(live_server, tmp_path):
    mon = client(live_server, tmp_path / "spool")
    out = tmp_path / "child-ids"
    try:
        parent_ids = [mon.log_classification(P, cohort={"camera": "parent"}) for _ in range(100)]
        child = os.fork()
        if child == 0:  # pragma: no cover - runs in the child, which reports through its exit code
            code = 1
            try:
                ids = [mon.log_classification(P, cohort={"camera": "child"}) for _ in range(100)]
                if mon.flush(timeout=60):
                    out.write_text("\n".join(ids))
                    code = 0
            finally:
                os._exit(code)
        parent_ids += [mon.log_classification(P, cohort={"camera": "parent"}) for _ in range(100)]
        _, status = os.waitpid(child, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert mon.flush(timeout=60)
    finally:
        mon.close()
    child_ids = out.read_text().split("\n")
    stored = live_server.prediction_ids()
    assert len(stored) == len(set(stored)) == 300
    assert set(stored) == set(parent_ids) | set(child_ids)
    assert {i.split("-")[0] for i in child_ids}.isdisjoint({i.split("-")[0] for i in parent_ids})


def test_opentelemetry_trace_and_span_ids_are_stored(live_server, tmp_path):
    from opentelemetry.sdk.trace import TracerProvider

    tracer = TracerProvider().get_tracer("inference")
    mon = client(live_server, tmp_path / "spool")
    try:
        untraced = mon.log_classification(P)
        with tracer.start_as_current_span("predict") as span:
            traced = mon.log_classification(P)
            context = span.get_span_context()
        assert mon.flush(timeout=60)
    finally:
        mon.close()
    rows = {r.prediction_id: r for r in live_server.rows()}
    assert rows[traced].trace_id == f"{context.trace_id:032x}"
    assert rows[traced].span_id == f"{context.span_id:016x}"
    assert rows[untraced].trace_id is None and rows[untraced].span_id is None


def test_embedding_sampling_is_deterministic_by_prediction_id(live_server, tmp_path):
    mon = client(live_server, tmp_path / "spool", embedding_one_in=4, embedding_dtype="float16")
    emb = np.linspace(-1, 1, 64, dtype=np.float32)
    try:
        ids = [mon.log_classification(P, embedding=emb, prediction_id=f"img-{i}") for i in range(400)]
        assert mon.flush(timeout=60)
    finally:
        mon.close()
    expected = {i for i in ids if embedding_sampled(i, 4)}
    assert 60 < len(expected) < 140  # about one in four
    rows = live_server.rows("embeddings")
    assert {r.prediction_id for r in rows} == expected
    np.testing.assert_array_equal(np.frombuffer(rows[0].embedding, "<f2"), emb.astype(np.float16))


def test_detection_ground_truth_and_errors_round_trip(db, model_name, late_server, tmp_path):
    from tests.sdk.conftest import register

    detector = model_name + "-det"
    register(db, detector, task="detection", classes=["dent", "scratch"])
    late_server.start()
    det = Client(late_server.url, api_key=late_server.key, model=detector, version="v2",
                 spool_dir=tmp_path / "det", flush_interval=0.05, exit_timeout=0)  # fmt: skip
    cls = client(late_server, tmp_path / "cls")
    try:
        pid = det.log_detection(boxes=[[10, 10, 50, 60], [0, 0, 5, 5]], box_classes=[1, 0], box_scores=[0.9, 0.2])
        det.log_ground_truth(pid, boxes=[[11, 10, 50, 61]], box_classes=["scratch"], iscrowd=[0])
        with pytest.raises(RuntimeError), cls.timed(cohort={"camera": "cam-2"}) as failed:
            raise RuntimeError("CUDA out of memory")
        with cls.timed() as rec:
            rec.probabilities = P
        cls.log_ground_truth(rec.prediction_id, label="dent")
        assert det.flush(timeout=60) and cls.flush(timeout=60)
    finally:
        det.close()
        cls.close()
    late_server.model = detector
    (row,) = late_server.rows()
    np.testing.assert_array_equal(np.frombuffer(row.box_classes, "<i4"), [1, 0])
    (truth,) = late_server.rows("ground_truth")
    assert truth.prediction_id == pid
    late_server.model = model_name
    rows = {r.prediction_id: r for r in late_server.rows()}
    assert rows[failed.prediction_id].status == 1 and rows[failed.prediction_id].latency_ms >= 0
    assert rows[rec.prediction_id].status == 0 and rows[rec.prediction_id].predicted_class == 0
    (label,) = late_server.rows("ground_truth")
    assert label.prediction_id == rec.prediction_id and label.label == 1
