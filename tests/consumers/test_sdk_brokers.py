"""The SDK's broker transports: ``Client("nats://...")`` and ``Client("mqtt://...")`` publish the
same batches, keep them in the spool while the broker cannot take them, and need their extra."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from monitor.errors import MissingExtra
from tests.consumers.brokers import MQTT_PORT, MqttNames, NatsNames, PrivateNats, consumer, consumers, register, stored
from tests.faults.servers import wait_for

P = np.array([0.7, 0.2, 0.1], dtype=np.float32)


@pytest.mark.parametrize(
    ("url", "blocked", "extra"),
    [
        pytest.param("nats://127.0.0.1:4222", "nats", "nats", id="nats"),
        pytest.param("tls://127.0.0.1:4222", "nats", "nats", id="nats-tls"),
        pytest.param("mqtt://127.0.0.1:1883", "paho", "mqtt", id="mqtt"),
    ],
)
def test_a_missing_extra_names_the_pip_command(url: str, blocked: str, extra: str) -> None:
    code = (
        f"import sys; sys.modules[{blocked!r}] = None\n"
        "from monitor.sdk import Client\n"
        f"try:\n    Client({url!r}, model='m', version='v1')\n"
        "except ImportError as exc:\n    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60).stdout
    assert out.startswith("MissingExtra ")
    assert f"pip install 'cvmon[{extra}]'" in out


def test_broker_urls() -> None:
    from monitor.sdk._mqtt import MQTTTransport
    from monitor.sdk._nats import NATSTransport
    from monitor.sdk._transport import transport_for

    nats = transport_for("nats://alice:s%40cret@broker:4333/site-3.edge", timeout=3)
    assert isinstance(nats, NATSTransport)
    assert nats.subject("/v1/predictions") == "site-3.edge.predictions"
    assert nats.subject("/v1/ground-truth") == "site-3.edge.ground-truth"
    assert nats._options["user"] == "alice" and nats._options["password"] == "s@cret"
    assert transport_for("nats://TOKEN@broker").subject("/v1/predictions") == "cvmon.ingest.predictions"  # type: ignore[attr-defined]
    assert transport_for("nats://TOKEN@broker")._options["token"] == "TOKEN"  # type: ignore[attr-defined]
    mqtt = transport_for("mqtts://bob:pw@broker/plant/line-2?version=3.1.1")
    assert isinstance(mqtt, MQTTTransport)
    assert mqtt.topic("/v1/predictions") == "plant/line-2/predictions" and mqtt._port == 8883 and not mqtt._v5
    assert transport_for("mqtt://broker").topic("/v1/ground-truth") == "cvmon/ingest/ground-truth"  # type: ignore[attr-defined]
    for bad in ("kafka://broker:9092", "nats:///nohost", "mqtt://broker?qos=2", "mqtt://broker?version=4", "nats://b?x=1"):
        with pytest.raises(ValueError):
            transport_for(bad)
    assert issubclass(MissingExtra, ImportError)


@pytest.mark.slow
def test_nats_sdk_spools_while_the_broker_is_down(db, tmp_path: Path, model_name: str, caplog: pytest.LogCaptureFixture) -> None:
    """An edge device logs while its broker is unreachable: the batches wait in the spool and are
    published once the broker is up (and its stream exists); each record is stored once."""
    from monitor.sdk import Client

    register(db.engine, model_name)
    server = PrivateNats()  # port chosen, nothing listening yet
    names = NatsNames()
    try:
        client = Client(f"{server.url}/{names.prefix}", model=model_name, version="v1", spool_dir=tmp_path / "spool",
                        batch_size=100, flush_interval=0.05, retry_deadline=0.3, backoff_base=0.05, backoff_max=0.5)  # fmt: skip
        with caplog.at_level(logging.WARNING, logger="monitor.sdk"):
            for i in range(1000):
                client.log_classification(probabilities=P, prediction_id=f"e-{i}")
            wait_for(lambda: client.stats().spool_records == 1000, "every record spooled")
            assert client.stats().sent == 0
            server.start()
            with consumers() as procs:
                procs.append(consumer(names.consumer_args(server.url), db_url=db.url, log=tmp_path / "consumer.log"))
                assert client.flush(timeout=60), client.stats()
                wait_for(lambda: stored(db.engine, model_name) == 1000, "1000 stored")
        stats = client.stats()
        client.close()
        assert stats.sent == 1000 and stats.dropped == 0 and stats.spool_records == 0, stats
        assert any("unreachable" in r.message for r in caplog.records)
    finally:
        server.destroy()


@pytest.mark.slow
def test_mqtt5_batches_wait_for_a_subscribed_session(db, mqtt_names: MqttNames, tmp_path: Path, model_name: str,
                                                     caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """With no consumer session subscribed, an MQTT 5 broker drops a QoS 1 message and says so in
    its PUBACK: the SDK keeps such batches in the spool, says what to do, and delivers them once
    `cvmon consume mqtt` has subscribed."""
    from monitor.sdk import Client

    register(db.engine, model_name)
    client = Client(f"mqtt://127.0.0.1:{MQTT_PORT}/{mqtt_names.topic_prefix}", model=model_name, version="v1",
                    spool_dir=tmp_path / "spool", batch_size=50, flush_interval=0.05, retry_deadline=0.3,
                    backoff_base=0.05, backoff_max=0.5)  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="monitor.sdk"):
        for i in range(200):
            client.log_classification(probabilities=P, prediction_id=f"e-{i}")
        wait_for(lambda: client.stats().spool_records == 200, "every record spooled")
    assert client.stats().sent == 0
    assert any("no session is subscribed" in r.getMessage() and "cvmon consume mqtt" in r.getMessage() for r in caplog.records)
    with consumers() as procs:
        procs.append(consumer(mqtt_names.consumer_args(MQTT_PORT), db_url=db.url, log=tmp_path / "consumer.log"))
        assert client.flush(timeout=60), client.stats()
        wait_for(lambda: stored(db.engine, model_name) == 200, "200 stored")
    client.close()
    assert json.dumps(client.stats().__repr__())  # stats stay printable after close


@pytest.mark.slow
def test_nats_batches_over_max_payload_are_halved(db, tmp_path: Path, model_name: str) -> None:
    """A batch over the server's max_payload is split in halves and sent again (as a 413 over
    HTTP), down to what fits; every record is stored once."""
    from monitor.sdk import Client

    register(db.engine, model_name)
    server = PrivateNats(max_payload=32 * 1024).start()
    names = NatsNames()
    rng = np.random.default_rng(0)
    try:
        with consumers() as procs:
            procs.append(consumer(names.consumer_args(server.url), db_url=db.url, log=tmp_path / "consumer.log"))
            client = Client(f"{server.url}/{names.prefix}", model=model_name, version="v1", spool_dir=tmp_path / "spool",
                            batch_size=400, flush_interval=10.0)  # fmt: skip
            for i in range(400):  # random embeddings hardly compress: ~140 kB gzipped per 400
                client.log_classification(probabilities=P, embedding=rng.normal(size=64).astype(np.float32), prediction_id=f"e-{i}")
            assert client.flush(timeout=60), client.stats()
            wait_for(lambda: stored(db.engine, model_name) == 400, "400 stored")
            stats = client.stats()
            client.close()
        assert stats.sent == 400 and stats.rejected == 0 and stats.spooled == 0, stats
        assert stored(db.engine, model_name, "embeddings") == 400
    finally:
        server.destroy()
