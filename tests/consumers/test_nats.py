"""``cvmon consume nats`` against the real NATS JetStream server: delivery, dead letters, models,
kill -9, broker restarts, shared consumers. The consumer always runs as a subprocess."""

from __future__ import annotations

import gzip
import json
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.server.names import METRIC
from tests.consumers.brokers import (
    NATS_URL,
    Nats,
    NatsNames,
    PrivateNats,
    batches,
    body,
    consumer,
    consumers,
    records,
    redelivered,
    register,
    scrape,
    stored,
)
from tests.faults.servers import wait_for

pytestmark = pytest.mark.slow  # the real NATS and Mosquitto servers

LIMIT = 1 << 20  # the consumers' CVMON_MAX_BODY_BYTES in these tests


def _poison(model: str, other: str) -> dict[str, bytes]:
    mixed = records(model, 4, run="mixed")
    mixed[1]["probabilities"] = [0.5, 0.5]  # two values, the model has three classes
    mixed[3] = records(other, 1, run="b")[0]  # a model the consumer may not write
    return {
        "mixed": body(mixed),
        "not-json": b"{not json",
        "not-gzip": b"\x1f\x8b\x08 not really gzip",
        "bomb": gzip.compress(b" " * (LIMIT + 1)),
        "shape": b'{"rows": []}',
        "empty": b'{"records": []}',
    }


def test_nats_end_to_end(db, nats_names: NatsNames, nats_client: Nats, tmp_path: Path, model_name: str) -> None:
    """Predictions (gzip and plain JSON) and ground truth are stored once each; malformed
    messages and records, and records of a model the consumer is not bound to, are dead-lettered
    with their reasons and original payloads; the metrics use the names of the table."""
    other = f"{model_name}-b"
    register(db.engine, model_name, other)
    prefix = nats_names.prefix
    with consumers() as procs:
        procs.append(proc := consumer(
            [*nats_names.consumer_args(NATS_URL), "--models", model_name, "--ack-wait", "5"],
            db_url=db.url, log=tmp_path / "consumer.log", env={"CVMON_MAX_BODY_BYTES": str(LIMIT)},
        ))  # fmt: skip
        good = records(model_name, 300)
        nats_client.publish(f"{prefix}.site-1.cam-2.predictions", [body(good[:200]), body(good[200:], gzipped=False)])
        poison = _poison(model_name, other)
        nats_client.publish(f"{prefix}.predictions", poison.values())
        nats_client.publish(f"{prefix}.thumbnails", [body(good[:1])])
        wait_for(lambda: stored(db.engine, model_name) == 302, "302 predictions stored")
        # labels after their predictions, as from a review tool (a label committed beside its
        # prediction by a concurrent transaction waits for housekeeping, on any ingest path)
        labels = [{"prediction_id": r["prediction_id"], "model": model_name, "label": "dent"} for r in good[:50]]
        nats_client.publish(f"{prefix}.ground-truth", [body(labels)])
        wait_for(lambda: stored(db.engine, model_name, "ground_truth") == 50, "50 labels stored")
        dead = nats_client.dead_letters(nats_names, expected=len(poison) + 1)
        by_payload = {bytes(m.data): m for m in dead}
        reasons = {name: by_payload[payload].headers["Cvmon-Reason"] for name, payload in poison.items()}
        assert reasons["mixed"].startswith("2 of 4 records rejected; first: record 1: probabilities has 2 values")
        errors = json.loads(by_payload[poison["mixed"]].headers["Cvmon-Errors"])
        assert [e["index"] for e in errors] == [1, 3]
        assert "may not write model" in errors[1]["error"] and other in errors[1]["error"]
        assert reasons["not-json"].startswith("payload is not valid JSON")
        assert reasons["not-gzip"].startswith("payload is not valid gzip")
        assert reasons["bomb"].startswith(f"payload is over the limit of {LIMIT} bytes")
        assert reasons["shape"].startswith('the body must be a JSON object {"records": [...]}')
        assert reasons["empty"] == "records is empty"
        thumbnails = by_payload[body(good[:1])]
        assert thumbnails.subject == f"{nats_names.dead_prefix}.{prefix}.thumbnails"
        assert "must end in .predictions or .ground-truth" in thumbnails.headers["Cvmon-Reason"]
        for m in dead:
            assert m.subject.startswith(f"{nats_names.dead_prefix}.{prefix}.")
            assert m.headers["Cvmon-Consumer"] == "cvmon"

        wait_for(lambda: scrape(proc.metrics_port).get("cvmon_consumer_messages_total") == 10, "10 acknowledged messages")
        metrics = scrape(proc.metrics_port)
        assert metrics["cvmon_consumer_records_total{kind=predictions,outcome=accepted}"] == 302
        assert metrics["cvmon_consumer_records_total{kind=predictions,outcome=rejected}"] == 2
        assert metrics["cvmon_consumer_records_total{kind=ground_truth,outcome=accepted}"] == 50
        assert metrics["cvmon_consumer_dead_letters_total"] == len(poison) + 1
        assert metrics["cvmon_consumer_in_flight_messages"] == 0
        assert metrics["cvmon_consumer_paused"] == 0
        wait_for(lambda: scrape(proc.metrics_port).get("cvmon_consumer_pending_messages") == 0, "nothing pending", timeout=15)
        exported = {n.removesuffix("_total") for n in METRIC if n.startswith("cvmon_consumer_")}
        served = {k.split("{")[0].removesuffix("_total").removesuffix("_bucket").removesuffix("_sum").removesuffix("_count")
                  .removesuffix("_created") for k in metrics if k.startswith("cvmon_consumer_")}  # fmt: skip
        assert served == exported
    assert "stored 352 records" in proc.output()  # the last progress line, printed on SIGTERM


def _publish_in_background(client: Nats, subject: str, payloads: list[bytes], pace: float) -> threading.Thread:
    def go() -> None:
        for p in payloads:
            client.publish(subject, [p])
            time.sleep(pace)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_nats_kill9_twice_stores_every_record_once(db, nats_names: NatsNames, nats_client: Nats, tmp_path: Path, model_name: str) -> None:
    """50 000 records; the consumer is SIGKILLed twice while it works and started again: every
    record is stored exactly once (the unacknowledged messages come back after ack_wait)."""
    register(db.engine, model_name)
    total = 50_000
    args = [*nats_names.consumer_args(NATS_URL), "--ack-wait", "3", "--batch-records", "1000"]
    log = tmp_path / "consumer.log"
    with consumers() as procs:
        procs.append(consumer(args, db_url=db.url, log=log))
        publisher = _publish_in_background(nats_client, f"{nats_names.prefix}.predictions", batches(model_name, total, 500), 0.02)
        for threshold in (total // 4, total // 2):
            at_kill = wait_for(lambda t=threshold: (n := stored(db.engine, model_name)) >= t and n, f"{threshold} stored")
            procs[-1].kill9()
            assert at_kill < total
            procs.append(consumer(args, db_url=db.url, log=log))
        publisher.join(120)
        wait_for(lambda: stored(db.engine, model_name) == total, f"{total} records stored", timeout=180)
        wait_for(lambda: nats_client.pending(nats_names) == 0, "every message acknowledged", timeout=60)
        assert stored(db.engine, model_name) == total
        assert _distinct_ids(db, model_name) == total
    assert log.read_text().count("nats: consuming") == 3
    assert redelivered(log, "nats: consuming") > 0, "the kills should have left messages unacknowledged"


def _distinct_ids(db: Any, model: str) -> int:
    import sqlalchemy as sa

    with db.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(DISTINCT prediction_id) FROM predictions WHERE model = :m"), {"m": model}).scalar_one())


@pytest.mark.slow
@pytest.mark.parametrize("db", ["postgresql"], indirect=True)  # the broker's restart; the kill -9 test covers both databases
def test_nats_server_restart_under_load(db, tmp_path: Path, model_name: str) -> None:
    """A private nats-server is restarted while the SDK publishes 50 000 records through it and the
    consumer stores them: the SDK retries and spools, the consumer reconnects, nothing is lost or
    doubled."""
    from monitor.sdk import Client

    register(db.engine, model_name)
    server = PrivateNats().start()
    names = NatsNames()
    total = 50_000
    try:
        with consumers() as procs:
            log = tmp_path / "consumer.log"
            procs.append(consumer([*names.consumer_args(server.url), "--ack-wait", "5"], db_url=db.url, log=log))
            client = Client(f"{server.url}/{names.prefix}", model=model_name, version="v1", spool_dir=tmp_path / "spool",
                            batch_size=500, flush_interval=0.2, retry_deadline=2.0, backoff_max=2.0, max_queue=total)  # fmt: skip

            def log_all() -> None:
                p = np.array([0.7, 0.2, 0.1], dtype=np.float32)
                for i in range(total):
                    client.log_classification(probabilities=p, prediction_id=f"r-{i}", cohort={"camera": f"cam-{i % 4}"})
                    if i % 500 == 499:
                        time.sleep(0.1)  # about 10 s of publishing: the restart falls in the middle

            producer = threading.Thread(target=log_all, daemon=True)
            producer.start()
            wait_for(lambda: client.stats().sent >= total // 4 and stored(db.engine, model_name) > 0, "a quarter published")
            server.stop()
            time.sleep(2)
            server.start()
            producer.join(180)
            assert client.flush(timeout=120), client.stats()
            wait_for(lambda: stored(db.engine, model_name) == total, f"{total} stored", timeout=180)
            stats = client.stats()
            client.close()
            assert stats.dropped == 0 and stats.rejected == 0, stats
            assert stats.retried > 0, "the restart should have failed some publishes"
            assert _distinct_ids(db, model_name) == total
            assert "nats: reconnected" in log.read_text()
    finally:
        server.destroy()


@pytest.mark.slow
def test_two_nats_consumers_share_a_stream(db, nats_names: NatsNames, nats_client: Nats, tmp_path: Path, model_name: str) -> None:
    """Two processes on one durable consumer split the messages: each takes some, together they
    acknowledge each message once and store each record once."""
    register(db.engine, model_name)
    messages, per = 200, 100
    with consumers() as procs:
        for n in (1, 2):
            procs.append(consumer([*nats_names.consumer_args(NATS_URL), "--batch-records", "500"], db_url=db.url, log=tmp_path / f"c{n}.log"))
        nats_client.publish(f"{nats_names.prefix}.predictions", batches(model_name, messages * per, per))
        wait_for(lambda: stored(db.engine, model_name) == messages * per, "every record stored", timeout=120)

        def acked() -> list[float]:
            return [scrape(p.metrics_port).get("cvmon_consumer_messages_total", 0.0) for p in procs]

        wait_for(lambda: sum(acked()) == messages, f"{messages} acknowledgements")
        time.sleep(1)
        counts = acked()
        assert sum(counts) == messages and min(counts) > 0, counts
        metrics = [scrape(p.metrics_port) for p in procs]
        assert sum(m.get("cvmon_consumer_records_total{kind=predictions,outcome=accepted}", 0) for m in metrics) == messages * per
        assert sum(m.get("cvmon_consumer_records_total{kind=predictions,outcome=duplicate}", 0) for m in metrics) == 0
        assert sum(m["cvmon_consumer_redelivered_messages_total"] for m in metrics) == 0


@pytest.mark.slow
def test_a_consumer_waits_for_its_broker_and_stops_on_sigterm(db, tmp_path: Path) -> None:
    """Started before its broker, the consumer retries (saying so) and still ends cleanly on SIGTERM."""
    server = PrivateNats()  # a port with nothing listening
    try:
        proc = consumer(NatsNames().consumer_args(server.url), db_url=db.url, log=tmp_path / "c.log", wait=False)
        wait_for(lambda: "Connect call failed" in proc.output(), "the connection to fail")
        assert proc.alive()
        assert proc.stop(timeout=10) == 0
    finally:
        server.destroy()
