"""``cvmon consume mqtt`` against the real Mosquitto broker: QoS 1, persistent sessions, shared
subscriptions, dead letters, models, kill -9, broker restarts. The consumer runs as a subprocess."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.consumers.brokers import (
    MQTT_PORT,
    Mqtt,
    MqttNames,
    PrivateMosquitto,
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
from tests.consumers.test_nats import LIMIT, _distinct_ids, _poison
from tests.faults.servers import wait_for

pytestmark = pytest.mark.slow  # the real NATS and Mosquitto servers


def test_mqtt_end_to_end(db, mqtt_names: MqttNames, tmp_path: Path, model_name: str) -> None:
    """Predictions (gzip and plain JSON) and ground truth are stored once each; malformed
    messages and records, and records of a model the consumer is not bound to, are dead-lettered
    as JSON envelopes with their reasons and original payloads."""
    other = f"{model_name}-b"
    register(db.engine, model_name, other)
    prefix = mqtt_names.topic_prefix
    client = Mqtt(MQTT_PORT, dead_prefix=mqtt_names.dead_prefix)
    try:
        with consumers() as procs:
            procs.append(proc := consumer(
                [*mqtt_names.consumer_args(MQTT_PORT), "--models", model_name],
                db_url=db.url, log=tmp_path / "consumer.log", env={"CVMON_MAX_BODY_BYTES": str(LIMIT)},
            ))  # fmt: skip
            good = records(model_name, 300)
            client.publish(f"{prefix}/cam-2/predictions", [body(good[:200]), body(good[200:], gzipped=False)])
            poison = _poison(model_name, other)
            client.publish(f"{prefix}/predictions", poison.values())
            client.publish(f"{prefix}/thumbnails", [body(good[:1])])
            wait_for(lambda: stored(db.engine, model_name) == 302, "302 predictions stored")
            labels = [{"prediction_id": r["prediction_id"], "model": model_name, "label": "dent"} for r in good[:50]]
            client.publish(f"{prefix}/ground-truth", [body(labels)])  # after their predictions (see test_nats.py)
            wait_for(lambda: stored(db.engine, model_name, "ground_truth") == 50, "50 labels stored")
            dead = client.dead_letters(len(poison) + 1)
            by_payload = {base64.b64decode(env["payload_base64"]): (topic, env) for topic, env in dead}
            reasons = {name: by_payload[payload][1]["reason"] for name, payload in poison.items()}
            assert reasons["mixed"].startswith("2 of 4 records rejected; first: record 1: probabilities has 2 values")
            errors = by_payload[poison["mixed"]][1]["errors"]
            assert [e["index"] for e in errors] == [1, 3] and other in errors[1]["error"]
            assert reasons["not-json"].startswith("payload is not valid JSON")
            assert reasons["not-gzip"].startswith("payload is not valid gzip")
            assert reasons["bomb"].startswith(f"payload is over the limit of {LIMIT} bytes")
            assert reasons["shape"].startswith('the body must be a JSON object {"records": [...]}')
            topic, envelope = by_payload[body(good[:1])]
            assert topic == f"{mqtt_names.dead_prefix}/{prefix}/thumbnails"
            assert "must end in /predictions or /ground-truth" in envelope["reason"]
            assert all(env["topic"].startswith(prefix) and env["consumer"] == mqtt_names.group for _, env in dead)

            wait_for(lambda: scrape(proc.metrics_port).get("cvmon_consumer_messages_total") == 10, "10 acknowledged messages")
            metrics = scrape(proc.metrics_port)
            assert metrics["cvmon_consumer_records_total{kind=predictions,outcome=accepted}"] == 302
            assert metrics["cvmon_consumer_records_total{kind=ground_truth,outcome=accepted}"] == 50
            assert metrics["cvmon_consumer_dead_letters_total"] == len(poison) + 1
            assert metrics["cvmon_consumer_in_flight_messages"] == 0
            # MQTT cannot tell what waits on the broker: no pending gauge rather than a wrong one
            assert "cvmon_consumer_pending_messages" not in metrics
    finally:
        client.close()


def _publish_in_background(port: int, topic: str, payloads: list[bytes], pace: float) -> threading.Thread:
    def go() -> None:
        client = Mqtt(port)
        try:
            for p in payloads:
                client.publish(topic, [p])
                time.sleep(pace)
        finally:
            client.close()

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_mqtt_kill9_twice_stores_every_record_once(db, mqtt_names: MqttNames, tmp_path: Path, model_name: str) -> None:
    """50 000 records; the consumer is SIGKILLed twice while it works and started again with the
    same client id: its persistent session gets the unacknowledged messages again, and every
    record is stored exactly once. MQTT 5 on PostgreSQL, 3.1.1 on SQLite: each protocol's session
    and each database's commit once, in the suite's time."""
    protocol = "5" if db.kind == "postgresql" else "3.1.1"
    register(db.engine, model_name)
    total = 50_000
    args = [*mqtt_names.consumer_args(MQTT_PORT, protocol=protocol), "--batch-records", "1000"]
    log = tmp_path / "consumer.log"
    with consumers() as procs:
        procs.append(consumer(args, db_url=db.url, log=log))
        publisher = _publish_in_background(MQTT_PORT, f"{mqtt_names.topic_prefix}/predictions", batches(model_name, total, 500), 0.02)
        for threshold in (total // 4, total // 2):
            at_kill = wait_for(lambda t=threshold: (n := stored(db.engine, model_name)) >= t and n, f"{threshold} stored")
            procs[-1].kill9()
            assert at_kill < total
            procs.append(consumer(args, db_url=db.url, log=log))
        publisher.join(120)
        wait_for(lambda: stored(db.engine, model_name) == total, f"{total} records stored", timeout=180)
        assert _distinct_ids(db, model_name) == total
    assert log.read_text().count("mqtt: connected") >= 3
    assert redelivered(log, "mqtt: connected") > 0, "the kills should have left messages unacknowledged"


@pytest.mark.slow
@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # the broker's restart; the kill -9 test covers both databases
def test_mosquitto_restart_under_load(db, tmp_path: Path, model_name: str) -> None:
    """A private mosquitto is restarted while the SDK publishes 50 000 records through it and the
    consumer stores them: the broker keeps the consumer's session across the restart, the SDK
    retries and spools, nothing is lost or doubled."""
    from monitor.sdk import Client

    register(db.engine, model_name)
    broker = PrivateMosquitto().start()
    names = MqttNames()
    total = 50_000
    try:
        with consumers() as procs:
            log = tmp_path / "consumer.log"
            procs.append(consumer(names.consumer_args(broker.port), db_url=db.url, log=log))
            client = Client(f"mqtt://127.0.0.1:{broker.port}/{names.topic_prefix}", model=model_name, version="v1",
                            spool_dir=tmp_path / "spool", batch_size=500, flush_interval=0.2, retry_deadline=2.0,
                            backoff_max=2.0, max_queue=total)  # fmt: skip

            def log_all() -> None:
                p = np.array([0.7, 0.2, 0.1], dtype=np.float32)
                for i in range(total):
                    client.log_classification(probabilities=p, prediction_id=f"r-{i}", cohort={"camera": f"cam-{i % 4}"})
                    if i % 500 == 499:
                        time.sleep(0.1)  # about 10 s of publishing: the restart falls in the middle

            producer = threading.Thread(target=log_all, daemon=True)
            producer.start()
            wait_for(lambda: client.stats().sent >= total // 4 and stored(db.engine, model_name) > 0, "a quarter published")
            broker.stop()
            time.sleep(2)
            broker.start()
            producer.join(180)
            assert client.flush(timeout=120), client.stats()
            wait_for(lambda: stored(db.engine, model_name) == total, f"{total} stored", timeout=180)
            stats = client.stats()
            client.close()
            assert stats.dropped == 0 and stats.rejected == 0, stats
            assert stats.retried > 0, "the restart should have failed some publishes"
            assert _distinct_ids(db, model_name) == total
            assert "mqtt: disconnected" in log.read_text()
    finally:
        broker.destroy()


@pytest.mark.slow
def test_two_mqtt_consumers_share_a_topic(db, mqtt_names: MqttNames, tmp_path: Path, model_name: str) -> None:
    """Two consumers in one shared-subscription group split the messages: each takes some, and
    together they acknowledge each message once and store each record once."""
    register(db.engine, model_name)
    messages, per = 200, 100
    client = Mqtt(MQTT_PORT)
    try:
        with consumers() as procs:
            for n in (1, 2):
                procs.append(consumer(mqtt_names.consumer_args(MQTT_PORT, n), db_url=db.url, log=tmp_path / f"c{n}.log"))
            client.publish(f"{mqtt_names.topic_prefix}/predictions", batches(model_name, messages * per, per))
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
    finally:
        client.close()
