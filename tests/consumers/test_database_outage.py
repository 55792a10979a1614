"""A database that goes away under a consumer: it holds at most --max-in-flight messages, stops
fetching, keeps them from redelivery (no nack loop), and stores everything once the database is
back. A private PostgreSQL server, stopped and started by the test."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.consumers.brokers import MQTT_PORT, NATS_URL, Mqtt, batches, consumer, consumers, register, scrape, stored
from tests.faults.servers import PrivatePostgres, wait_for

IN_FLIGHT = 20


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["nats", "mqtt"])
def test_failing_database_pauses_fetching(broker: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    from monitor.server.store.engine import make_engine

    pg = PrivatePostgres().init()
    pg.start()
    try:
        pg.migrate()
        engine = make_engine(pg.url)
        register(engine, "m")
        messages, per = 100, 100
        if broker == "nats":
            names = request.getfixturevalue("nats_names")
            client = request.getfixturevalue("nats_client")
            args = [*names.consumer_args(NATS_URL), "--ack-wait", "2"]

            def publish(payloads: list[bytes]) -> None:
                client.publish(f"{names.prefix}.predictions", payloads)
        else:
            names = request.getfixturevalue("mqtt_names")
            mqtt = Mqtt(MQTT_PORT)
            request.addfinalizer(mqtt.close)
            args = names.consumer_args(MQTT_PORT)

            def publish(payloads: list[bytes]) -> None:
                mqtt.publish(f"{names.topic_prefix}/predictions", payloads)

        with consumers() as procs:
            procs.append(proc := consumer([*args, "--max-in-flight", str(IN_FLIGHT)], db_url=pg.url, log=tmp_path / "c.log"))
            payloads = batches("m", messages * per, per)
            publish(payloads[:5])
            wait_for(lambda: stored(engine, "m") == 5 * per, "the first messages stored")
            engine.dispose()
            pg.stop()
            publish(payloads[5:])
            wait_for(lambda: scrape(proc.metrics_port).get("cvmon_consumer_paused") == 1, "the consumer to pause")
            wait_for(lambda: scrape(proc.metrics_port)["cvmon_consumer_in_flight_messages"] == IN_FLIGHT, "in-flight at its bound")
            time.sleep(6)  # three times ack_wait (NATS): held messages must not be delivered again
            metrics = scrape(proc.metrics_port)
            assert metrics["cvmon_consumer_in_flight_messages"] == IN_FLIGHT
            assert metrics["cvmon_consumer_redelivered_messages_total"] == 0
            assert metrics["cvmon_consumer_messages_total"] == 5
            if broker == "nats":
                assert client.pending(names) == messages - 5  # the rest wait on the server, not in the consumer
            pg.start()
            wait_for(lambda: stored(engine, "m") == messages * per, "every record stored", timeout=120)
            wait_for(lambda: scrape(proc.metrics_port)["cvmon_consumer_messages_total"] == messages, "every message acknowledged")
            metrics = scrape(proc.metrics_port)
            assert metrics["cvmon_consumer_paused"] == 0
            assert metrics["cvmon_consumer_redelivered_messages_total"] == 0
            assert metrics.get("cvmon_consumer_records_total{kind=predictions,outcome=duplicate}", 0) == 0
            assert "the database answers again; resuming" in proc.output()
        engine.dispose()
    finally:
        pg.destroy()
