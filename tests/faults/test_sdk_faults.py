"""The SDK as the client through server faults: kill -9 of `cvmon serve` in the middle of a stream
of batches, and an outage that ends while new records queue behind the spool.

(The raw-HTTP variant of the kill is tests/server/test_restart.py; a full spool dropping and
counting the oldest batches is tests/sdk/test_delivery.py::test_full_spool_drops_the_oldest_and_counts_them.)
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from monitor.sdk import Client
from monitor.server.services.keys import create_key
from monitor.server.services.models import register_model
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from testkit.servers import ThreadServer, free_port
from tests.faults.servers import serve, wait_for

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

CLASSES = ["a", "b", "c"]


def _setup(db, model: str) -> str:
    with write_transaction(db.engine) as conn:
        register_model(conn, model, "classification", CLASSES, 0.5, now=datetime.now(UTC))
        _, key = create_key(conn, scopes=["ingest", "read"], models=[model], name="sdk-faults", now=datetime.now(UTC))
    return key


def _stored(db, model: str) -> tuple[list[str], int]:
    with db.engine.connect() as conn:
        ids = list(
            conn.execute(sa.select(t.predictions.c.prediction_id).where(t.predictions.c.model == model)).scalars()
        )
        counted = conn.execute(
            sa.select(sa.func.sum(t.model_versions.c.predictions)).where(t.model_versions.c.model == model)
        ).scalar()
    return ids, int(counted or 0)


def test_sdk_retries_across_a_kill_9_of_the_server_and_stores_each_record_once(db, model_name, tmp_path):
    key = _setup(db, model_name)
    port = free_port()
    log = tmp_path / "server.log"
    server = serve(db.url, port, log)
    mon = Client(f"http://127.0.0.1:{port}", model=model_name, version="v1", api_key=key, classes=CLASSES,
                 spool_dir=tmp_path / "spool", batch_size=200, flush_interval=0.05, retry_deadline=2.0,
                 backoff_base=0.05, backoff_max=0.5, trace=False)  # fmt: skip
    logged: list[str] = []
    done = threading.Event()

    def produce() -> None:
        for i in range(20_000):
            logged.append(mon.log_classification([0.6, 0.3, 0.1], latency_ms=2.0, prediction_id=f"r{i:05d}"))
            if i % 200 == 0:
                time.sleep(0.01)  # a steady stream, so the kill lands in the middle of it
        done.set()

    producer = threading.Thread(target=produce)
    try:
        producer.start()
        wait_for(lambda: mon.stats().sent >= 2_000, "the first batches to be acknowledged")
        server.kill9()
        acknowledged_at_kill = mon.stats().sent
        time.sleep(1.0)  # requests in flight die with the server; new ones are refused
        server = serve(db.url, port, log)
        producer.join()
        assert mon.flush(timeout=120), mon.stats()
        stats = mon.stats()
    finally:
        done.set()
        mon.close(timeout=5)
        server.stop()
    ids, counted = _stored(db, model_name)
    assert acknowledged_at_kill < 20_000, "the kill must happen mid-stream"
    assert sorted(ids) == sorted(logged) and len(ids) == 20_000
    assert counted == 20_000  # no batch was counted twice, whatever was resent
    assert stats.retried > 0 and stats.dropped == 0 and stats.rejected == 0


def test_flush_after_an_outage_drains_the_spool_with_new_records_queued_behind_it(db, model_name, tmp_path):
    """Regression: flush() answered False at once when the spool was not empty, because the
    records logged since were spooled behind it (to keep their order) and that counted as a
    failed delivery; nothing was drained."""
    from monitor.server.app import create_app
    from monitor.server.settings import Settings

    key = _setup(db, model_name)
    port = free_port()
    mon = Client(f"http://127.0.0.1:{port}", model=model_name, version="v1", api_key=key, spool_dir=tmp_path / "spool",
                 batch_size=500, flush_interval=60, retry_deadline=0.2, backoff_base=30.0, backoff_max=30.0, trace=False)  # fmt: skip
    server = ThreadServer(create_app(Settings(database_url=db.url, scheduler=False)))
    server.port, server.server.config.port = port, port
    try:
        early = [mon.log_classification([0.5, 0.3, 0.2]) for _ in range(100)]
        assert not mon.flush(timeout=1)  # nothing listens: the batch goes to the spool
        assert mon.stats().spool_records == 100
        with server:
            late = [mon.log_classification([0.5, 0.3, 0.2]) for _ in range(10)]  # still in the open batch
            started = time.monotonic()
            assert mon.flush(timeout=30), mon.stats()
            assert time.monotonic() - started < 25  # drained now, not after the 30 s backoff
            ids, _ = _stored(db, model_name)
    finally:
        mon.close(timeout=5)
    assert sorted(ids) == sorted(early + late)
    assert mon.stats().rejected == 0
