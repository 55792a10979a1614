"""Real brokers for the consumer tests: the shared NATS (JetStream) and Mosquitto servers, private
ones on free ports that a test may restart, and small synchronous clients to publish and to read
dead letters.

Every test works under names of its own (a stream, a subject or topic prefix, a consumer group)
and removes them at the end, so tests share the servers without seeing each other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from testkit.servers import free_port
from tests.conftest import IN_CI
from tests.faults.servers import Cvmon, wait_for

NATS_URL = os.environ.get("CVMON_TEST_NATS_URL", "nats://127.0.0.1:4222")
MQTT_HOST, MQTT_PORT = "127.0.0.1", int(os.environ.get("CVMON_TEST_MQTT_PORT", "1883"))
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
CLASSES = ["scratch", "dent", "ok"]


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def require_server(host: str, port: int, what: str) -> None:
    """Skip (fail under CI=true) when a shared broker is not running."""
    if not _reachable(host, port):
        message = f"{what} at {host}:{port} is unreachable (.ci/run starts it)"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


# --------------------------------------------------------------------------------------------
# records and message bodies


def records(model: str, n: int, *, start: int = 0, run: str | None = None) -> list[dict[str, Any]]:
    run = run or uuid.uuid4().hex[:8]
    now = time.time()
    return [
        {
            "prediction_id": f"{run}-{i}",
            "model": model,
            "model_version": "v1",
            "timestamp": now - 60 + (i % 1000) / 1000,
            "probabilities": [0.7, 0.2, 0.1] if i % 2 else [0.1, 0.3, 0.6],
            "latency_ms": float(i % 13),
            "cohort": {"camera": f"cam-{i % 4}"},
        }
        for i in range(start, start + n)
    ]


def body(recs: list[dict[str, Any]], *, gzipped: bool = True) -> bytes:
    """A message as the SDK sends it (gzip JSON) or as plain JSON."""
    raw = json.dumps({"records": recs}).encode()
    return gzip.compress(raw, compresslevel=1, mtime=0) if gzipped else raw


def batches(model: str, total: int, per_message: int, run: str | None = None) -> list[bytes]:
    run = run or uuid.uuid4().hex[:8]
    return [body(records(model, min(per_message, total - i), start=i, run=run)) for i in range(0, total, per_message)]


def stored(engine: Any, model: str, table: str = "predictions") -> int:
    import sqlalchemy as sa

    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE model = :m"), {"m": model}).scalar_one())


def register(engine: Any, *models: str) -> None:
    from datetime import UTC, datetime

    from monitor.server.services.models import register_model
    from monitor.server.store.engine import write_transaction

    with write_transaction(engine) as conn:
        for model in models:
            register_model(conn, model, "classification", CLASSES, 0.5, now=datetime.now(UTC))


def scrape(port: int) -> dict[str, float]:
    """The consumer's metrics: ``name{sorted labels}`` -> value (children summed over kind/outcome
    are left to the caller)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in ("broker", "consumer"))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


# --------------------------------------------------------------------------------------------
# NATS


@dataclass
class NatsNames:
    """A stream, its subjects and its dead letters, all of one test."""

    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def stream(self) -> str:
        return f"T{self.tag}"

    @property
    def prefix(self) -> str:
        return f"t{self.tag}.ingest"

    @property
    def dead_prefix(self) -> str:
        return f"t{self.tag}.dead"

    @property
    def dead_stream(self) -> str:
        return f"T{self.tag}_DEAD"

    def consumer_args(self, url: str, durable: str = "cvmon") -> list[str]:
        return [
            "consume", "nats", "--url", url, "--stream", self.stream, "--subjects", f"{self.prefix}.>",
            "--consumer", durable, "--dead-letter-prefix", self.dead_prefix, "--dead-letter-stream", self.dead_stream,
        ]  # fmt: skip


class Nats:
    """A synchronous test client on one NATS server (an event loop in a thread of its own)."""

    def __init__(self, url: str) -> None:
        import nats

        self.url = url
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.nc = self.run(nats.connect(url, max_reconnect_attempts=-1, reconnect_time_wait=0.5))
        self.js = self.nc.jetstream()

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def publish(self, subject: str, payloads: Iterable[bytes]) -> None:
        async def go() -> None:
            for p in payloads:
                await self.js.publish(subject, p, timeout=10)

        self.run(go(), timeout=300)

    def dead_letters(self, names: NatsNames, expected: int, timeout: float = 30.0) -> list[Any]:
        """The messages of the dead-letter stream, once ``expected`` are there."""

        async def count() -> int:
            info = await self.js.stream_info(names.dead_stream)
            return int(info.state.messages)

        wait_for(lambda: self.run(count()) >= expected, f"{expected} dead letters", timeout=timeout)

        async def read() -> list[Any]:
            return [await self.js.get_msg(names.dead_stream, seq) for seq in range(1, expected + 1)]

        return list(self.run(read()))

    def pending(self, names: NatsNames, durable: str = "cvmon") -> int:
        async def go() -> int:
            info = await self.js.consumer_info(names.stream, durable)
            return int(info.num_pending) + int(info.num_ack_pending)

        return int(self.run(go()))

    def delete(self, names: NatsNames) -> None:
        async def go() -> None:
            for stream in (names.stream, names.dead_stream):
                with contextlib.suppress(Exception):
                    await self.js.delete_stream(stream)

        with contextlib.suppress(Exception):
            self.run(go(), timeout=10)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.run(self.nc.close(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


class PrivateNats:
    """``nats-server -js`` on a free port with its own store directory; restartable."""

    def __init__(self, *, max_payload: int | None = None) -> None:
        if not Path(NATS_SERVER).exists():
            message = "nats-server is not installed"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cvmon-nats-"))
        self.conf = self.root / "nats.conf"
        self.conf.write_text(f"max_payload: {max_payload}\n" if max_payload else "")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self) -> PrivateNats:
        with (self.root / "nats.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [NATS_SERVER, "-c", str(self.conf), "-a", "127.0.0.1", "-p", str(self.port), "-js", "-sd", str(self.root / "store")],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        wait_for(lambda: _reachable("127.0.0.1", self.port), "nats-server to listen", timeout=30)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# MQTT


@dataclass
class MqttNames:
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @property
    def topic_prefix(self) -> str:
        return f"t{self.tag}/ingest"

    @property
    def dead_prefix(self) -> str:
        return f"t{self.tag}/dead"

    @property
    def group(self) -> str:
        return f"g{self.tag}"

    def client_id(self, n: int = 1) -> str:
        return f"c{self.tag}-{n}"

    def consumer_args(self, port: int, n: int = 1, protocol: str = "5") -> list[str]:
        return [
            "consume", "mqtt", "--url", f"mqtt://127.0.0.1:{port}", "--topic", f"{self.topic_prefix}/#",
            "--group", self.group, "--client-id", self.client_id(n), "--protocol", protocol,
            "--dead-letter-prefix", self.dead_prefix,
        ]  # fmt: skip


class Mqtt:
    """A synchronous MQTT 5 test client: QoS 1 publishing, and a clean-session subscriber that
    collects the dead letters."""

    def __init__(self, port: int, *, dead_prefix: str | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.client import CallbackAPIVersion

        self.port = port
        self.received: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect(MQTT_HOST, port)
        self.client.loop_start()
        assert connected.wait(10), "no CONNACK from mosquitto"
        if dead_prefix is not None:
            done = threading.Event()
            self.client.on_subscribe = lambda *a: done.set()
            self.client.subscribe(f"{dead_prefix}/#", qos=1)
            assert done.wait(10)

    def _on_message(self, _c: Any, _u: Any, msg: Any) -> None:
        with self._lock:
            self.received.append((msg.topic, msg.payload))

    def publish(self, topic: str, payloads: Iterable[bytes]) -> None:
        infos = [self.client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    def dead_letters(self, expected: int, timeout: float = 30.0) -> list[tuple[str, dict[str, Any]]]:
        wait_for(lambda: len(self.received) >= expected, f"{expected} dead letters", timeout=timeout)
        with self._lock:
            return [(t, json.loads(p)) for t, p in self.received]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def forget_session(port: int, client_id: str) -> None:
    """End a consumer's persistent session (a clean start with no expiry), so that the shared
    broker keeps nothing of a test."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.client import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    with contextlib.suppress(OSError):
        client.connect(MQTT_HOST, port, clean_start=True)
        client.loop_start()
        time.sleep(0.2)
        client.disconnect()
        client.loop_stop()


class PrivateMosquitto:
    """mosquitto with persistence on a free port; restartable (a graceful stop saves its state).

    Unlike Mosquitto's defaults (1000), queued messages per session are not capped: the tests
    hold more than that while a consumer is down (docs/streaming.md says the same to operators).
    """

    def __init__(self) -> None:
        if not Path(MOSQUITTO).exists():
            message = "mosquitto is not installed"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cvmon-mosquitto-"))
        os.chmod(self.root, 0o777)  # mosquitto drops root privileges to its own user
        self.conf = self.root / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.root}/\nmax_queued_messages 1000000\nmax_inflight_messages 0\n"
            f"log_dest file {self.root}/mosquitto.log\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateMosquitto:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(lambda: _reachable("127.0.0.1", self.port), "mosquitto to listen", timeout=30)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# consumer processes


def consumer(args: list[str], *, db_url: str, log: Path, env: dict[str, str] | None = None, wait: bool = True) -> Cvmon:
    """Start ``cvmon consume ...`` (metrics on a free port: ``proc.metrics_port``) and wait until
    it consumes (its log says so)."""
    port = free_port()
    argv = [*args, "--metrics-port", str(port), "--progress-seconds", "1", "--log-level", "info"]
    proc = Cvmon(argv, env={"CVMON_DATABASE_URL": db_url, **(env or {})}, log=log)
    proc.metrics_port = port  # type: ignore[attr-defined]
    marks = ("nats: consuming", "mqtt: connected")
    start = len(proc.output())
    proc.start()
    if not wait:
        return proc

    def ready() -> bool:
        if not proc.alive():
            raise AssertionError(f"cvmon consume exited:\n{proc.output()[-3000:]}")
        return any(m in proc.output()[start:] for m in marks)

    wait_for(ready, "the consumer to start", timeout=60, every=0.1)
    return proc


@contextlib.contextmanager
def consumers() -> Iterator[list[Cvmon]]:
    """A list the test appends its consumer processes to; all are stopped at the end."""
    started: list[Cvmon] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.stop()


def redelivered(log: Path, start_mark: str) -> int:
    """Messages delivered again, summed over the consumer processes that wrote ``log`` (each
    process's progress lines count from its own start, marked by ``start_mark``)."""
    total = 0
    for segment in log.read_text(errors="replace").split(start_mark)[1:]:
        counts = [int(m.replace(",", "")) for m in re.findall(r"([\d,]+) redelivered", segment)]
        total += max(counts, default=0)
    return total
