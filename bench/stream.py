"""Streaming ingest: records/s from publishers through NATS JetStream and MQTT into PostgreSQL,
beside HTTP ingest of the same records in the same run, and end-to-end lag at 80 % of that rate.

The records are those of bench/ingest.py (classification, 10 classes; optionally an embedding),
encoded as the SDK sends them, 1000 per message or request, gzip level 1. In one run:

  * HTTP: `cvmon serve --workers W`, C client threads posting the pre-built bodies.
  * NATS: W `cvmon consume nats` processes on one durable consumer of a private nats-server
    (JetStream, file storage); the bodies published with JetStream acknowledgements.
  * MQTT: W `cvmon consume mqtt` processes in one shared-subscription group of a private mosquitto
    (persistent sessions, no queue cap); the bodies published with QoS 1.

Throughput: records / (first publish to the last record committed, from the consumers' own
counters). Lag: publishers pace messages of 100 records at 80 % of the broker's measured rate for
--lag-seconds; each record's timestamp is the moment its message is published, and its lag is the
server's received_at minus that timestamp, read from the database (received_at is taken when the
batch's transaction starts, so the write of that batch is not in it: the consumers' batch-duration
p99 is printed beside it).

    python bench/stream.py [--records 200000] [--workers 3] [--clients 4] [--lag-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psycopg
from ingest import BATCH, CLASSES, bodies, post_all, records, start_server
from prometheus_client.parser import text_string_to_metric_families

from monitor.sdk._records import encode as sdk_encode
from monitor.server.services.keys import create_key
from monitor.server.services.models import register_model
from monitor.server.store import migrate
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager
from testkit.scratch import create_scratch_database, drop_scratch_database, libpq_dsn, sqlalchemy_url
from testkit.servers import free_port

ROOT = Path(__file__).resolve().parents[1]

LAG_MESSAGE = 100
_SENTINEL = b"1111111111.125"


def wait_port(port: int, timeout: float = 30) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


# --------------------------------------------------------------------------------------------
# brokers and consumers


class Brokers:
    """A private nats-server and mosquitto in a temporary directory."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="cvmon-bench-stream-"))
        os.chmod(self.root, 0o777)  # mosquitto drops root privileges
        self.nats_port, self.mqtt_port = free_port(), free_port()
        nats_server = shutil.which("nats-server") or "/usr/sbin/nats-server"
        mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        conf = self.root / "mosquitto.conf"
        conf.write_text(
            f"listener {self.mqtt_port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.root}/\nmax_queued_messages 1000000\n"
        )
        self.procs = [
            subprocess.Popen([nats_server, "-a", "127.0.0.1", "-p", str(self.nats_port), "-js", "-sd", str(self.root / "js")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen([mosquitto, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]  # fmt: skip
        wait_port(self.nats_port)
        wait_port(self.mqtt_port)

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
            proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)


class Consumers:
    """W `cvmon consume` processes of one group; their counters read from their metrics ports."""

    def __init__(self, broker: str, args: list[str], url: str, n: int, log: Path) -> None:
        self.ports = [free_port() for _ in range(n)]
        env = {**os.environ, "CVMON_DATABASE_URL": url}
        self.procs = []
        with log.open("ab") as out:
            for i, port in enumerate(self.ports):
                extra = ["--client-id", f"bench-{i}"] if broker == "mqtt" else []
                self.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "monitor.server.cli", "consume", broker, *args, *extra, "--metrics-port", str(port),
                     "--progress-seconds", "0", "--log-level", "warning"], env=env, cwd=ROOT, stdout=out, stderr=out,
                ))  # fmt: skip
        for port in self.ports:
            wait_port(port, 60)

    def samples(self, name: str) -> list[tuple[dict[str, str], float]]:
        out = []
        for port in self.ports:
            for family in text_string_to_metric_families(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text):
                out += [(s.labels, s.value) for s in family.samples if s.name == name]
        return out

    def accepted(self) -> int:
        return int(sum(v for labels, v in self.samples("cvmon_consumer_records_total") if labels.get("outcome") == "accepted"))

    def batch_buckets(self) -> dict[float, float]:
        """The batch-duration histogram, summed over the consumers (cumulative counts per bound)."""
        buckets: dict[float, float] = {}
        for labels, v in self.samples("cvmon_consumer_batch_duration_seconds_bucket"):
            le = float(labels["le"])
            buckets[le] = buckets.get(le, 0.0) + v
        return buckets

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(60)


def p99_bound(after: dict[float, float], before: dict[float, float]) -> float:
    """The histogram bucket bound under which 99 % of the batches between two snapshots fell."""
    diff = {le: n - before.get(le, 0.0) for le, n in after.items()}
    edges = sorted(diff)
    total = diff[edges[-1]] if edges else 0
    return next((le for le in edges if diff[le] >= 0.99 * total), float("nan")) if total else float("nan")


def wait_accepted(consumers: Consumers, n: int, timeout: float = 600) -> float:
    """Poll the consumers' counters until ``n`` records are committed; returns that moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if consumers.accepted() >= n:
            return time.perf_counter()
        time.sleep(0.05)  # a scrape costs each consumer ~1 ms of its GIL: not much more often
    raise SystemExit(f"the consumers stored {consumers.accepted()} of {n} records in {timeout:.0f}s")


# --------------------------------------------------------------------------------------------
# publishers


class NatsPublisher:
    def __init__(self, port: int) -> None:
        import nats

        self.loop = asyncio.new_event_loop()
        self.nc = self.loop.run_until_complete(nats.connect(f"nats://127.0.0.1:{port}"))
        self.js = self.nc.jetstream()

    def publish_all(self, subject: str, payloads: list[bytes], concurrency: int = 8) -> None:
        async def worker(queue: list[bytes]) -> None:
            while queue:
                await self.js.publish(subject, queue.pop(), timeout=30)

        async def publish() -> None:
            queue = list(reversed(payloads))
            await asyncio.gather(*(worker(queue) for _ in range(concurrency)))

        self.loop.run_until_complete(publish())

    def publish(self, subject: str, payload: bytes) -> None:
        self.loop.run_until_complete(self.js.publish(subject, payload, timeout=30))

    def close(self) -> None:
        self.loop.run_until_complete(self.nc.close())
        self.loop.close()


class MqttPublisher:
    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.client import CallbackAPIVersion

        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(64)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        connected.wait(10)

    def publish_all(self, topic: str, payloads: list[bytes]) -> None:
        infos = [self.client.publish(topic, p, qos=1) for p in payloads]
        for info in infos:
            info.wait_for_publish(60)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def lag_templates(model: str, messages: int, dim: int) -> list[bytes]:
    """Message bodies (JSON, not yet gzipped) whose timestamps are a sentinel, replaced by the
    publish time when each is sent."""
    now = datetime.now(UTC)
    encoded = []
    for rec in records(model, messages * LAG_MESSAGE, dim, now, seed=7):
        rec["timestamp"] = float(_SENTINEL)
        encoded.append(sdk_encode(rec, model, "v1", "float16"))
    return [b'{"records":[' + b",".join(encoded[i : i + LAG_MESSAGE]) + b"]}" for i in range(0, len(encoded), LAG_MESSAGE)]


def paced(publish, destination: str, templates: list[bytes], rate: float) -> float:  # type: ignore[no-untyped-def]
    """Publish the templates at ``rate`` records/s, each stamped with its publish time; returns the
    seconds it took (behind schedule means the publisher, not cvmon, was the limit)."""
    interval = LAG_MESSAGE / rate
    start = time.perf_counter()
    for i, template in enumerate(templates):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        stamped = template.replace(_SENTINEL, f"{time.time():.6f}".encode())
        publish(destination, gzip.compress(stamped, compresslevel=1, mtime=0))
    return time.perf_counter() - start


def lag_quantiles(dsn: str, model: str) -> tuple[float, float, float, int]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag), percentile_cont(0.99) WITHIN GROUP (ORDER BY lag), "
            "max(lag), count(*) FROM (SELECT extract(epoch FROM received_at - ts) AS lag FROM predictions WHERE model = %s) l",
            (model,),
        ).fetchone()
    assert row is not None
    return float(row[0]), float(row[1]), float(row[2]), int(row[3])


def count(dsn: str, model: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*) FROM predictions WHERE model = %s", (model,)).fetchone()
    return int(row[0]) if row else 0


# --------------------------------------------------------------------------------------------


class HttpPath:
    """`cvmon serve --workers W`, posted to by C client threads."""

    label = "HTTP (cvmon serve)"

    def __init__(self, url: str, key: str, workers: int, clients: int) -> None:
        self.port, self.key, self.clients = free_port(), key, clients
        self.server = start_server(url, self.port, workers)
        self.warm = False

    def run(self, payloads: list[bytes]) -> float:
        if not self.warm:  # the workers' connection pools
            post_all(self.port, self.key, payloads[:2], 1)
            payloads, self.warm = payloads[2:], True
        return BATCH * len(payloads) / post_all(self.port, self.key, payloads, self.clients)

    def close(self) -> None:
        self.server.terminate()
        self.server.wait(30)


class BusPath:
    """W consumers of one broker and a publisher."""

    def __init__(self, broker: str, brokers: Brokers, url: str, workers: int, extra: list[str]) -> None:
        self.broker = broker
        if broker == "nats":
            self.label = "NATS JetStream -> consume"
            args = ["--url", f"nats://127.0.0.1:{brokers.nats_port}", "--stream", "BENCH", "--subjects", "bench.ingest.>",
                    "--consumer", "bench", "--dead-letter-prefix", "bench.dead", "--dead-letter-stream", "BENCH_DEAD"]  # fmt: skip
            self.dest = "bench.ingest.{}.predictions"
        else:
            self.label = "MQTT (QoS 1) -> consume"
            args = ["--url", f"mqtt://127.0.0.1:{brokers.mqtt_port}", "--topic", "bench/ingest/#", "--group", "bench",
                    "--dead-letter-prefix", "bench/dead"]  # fmt: skip
            self.dest = "bench/ingest/{}/predictions"
        self.consumers = Consumers(broker, [*args, *extra], url, workers, brokers.root / f"consume-{broker}.log")
        self.publisher = NatsPublisher(brokers.nats_port) if broker == "nats" else MqttPublisher(brokers.mqtt_port)
        self.warm = False

    def run(self, payloads: list[bytes]) -> float:
        if not self.warm:
            before = self.consumers.accepted()
            self.publisher.publish_all(self.dest.format("warm"), payloads[:2])
            wait_accepted(self.consumers, before + 2 * BATCH)
            payloads, self.warm = payloads[2:], True
        before = self.consumers.accepted()
        t0 = time.perf_counter()
        self.publisher.publish_all(self.dest.format("run"), payloads)
        t1 = wait_accepted(self.consumers, before + BATCH * len(payloads))
        return BATCH * len(payloads) / (t1 - t0)

    def lag(self, dsn: str, rate: float, seconds: float, dim: int) -> tuple[float, float, float, int, float, float]:
        messages = max(10, int(rate * seconds / LAG_MESSAGE))
        templates = lag_templates(f"lag-{self.broker}", messages, dim)
        before, buckets = self.consumers.accepted(), self.consumers.batch_buckets()
        took = paced(self.publisher.publish, self.dest.format("lag"), templates, rate)
        wait_accepted(self.consumers, before + messages * LAG_MESSAGE)
        p50, p99, worst, rows = lag_quantiles(dsn, f"lag-{self.broker}")
        return p50, p99, worst, rows, messages * LAG_MESSAGE / took, p99_bound(self.consumers.batch_buckets(), buckets)

    def close(self) -> None:
        self.publisher.close()
        self.consumers.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=100_000, help="records per path and round (default 100000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every path, interleaved; medians reported (default 3)")
    parser.add_argument("--workers", type=int, default=3, help="API workers, and consumer processes per broker (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent HTTP client connections (default 4)")
    parser.add_argument("--embedding-dim", type=int, default=0, help="add a float16 embedding of this size (default none)")
    parser.add_argument("--lag-seconds", type=float, default=20.0, help="length of each lag run (default 20)")
    parser.add_argument("--brokers", default="nats,mqtt", help="which brokers (default nats,mqtt)")
    parser.add_argument("--consumer-args", default="", help="extra `cvmon consume` options, e.g. '--workers 1'")
    parser.add_argument("--database-url", default=os.environ.get("CVMON_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="an existing PostgreSQL database; a scratch database is created next to it")  # fmt: skip
    args = parser.parse_args()
    n = args.records - args.records % BATCH
    dim = args.embedding_dim
    wanted = [b for b in ("nats", "mqtt") if b in args.brokers.split(",")]

    scratch = create_scratch_database(args.database_url, "cvmon_bench_stream")
    sa_url, dsn = sqlalchemy_url(scratch), libpq_dsn(scratch)
    brokers = None
    paths: dict[str, HttpPath | BusPath] = {}
    try:
        engine = make_engine(sa_url)
        migrate.upgrade(engine)
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        PartitionManager(engine).ensure_ahead(start, days_ahead=2)
        with write_transaction(engine) as conn:
            _, key = create_key(conn, scopes=["ingest"], models=None, name="bench", now=datetime.now(UTC))
            for m in ("bench-http", "bench-nats", "bench-mqtt", "lag-nats", "lag-mqtt"):
                register_model(conn, m, "classification", CLASSES, 0.5, now=datetime.now(UTC))
        engine.dispose()
        brokers = Brokers()
        paths["http"] = HttpPath(sa_url, key, args.workers, args.clients)
        for broker in wanted:
            paths[broker] = BusPath(broker, brokers, sa_url, args.workers, args.consumer_args.split())
        print(f"{n} records per path and round, {args.rounds} rounds interleaved, {BATCH} records per request or "
              f"message, gzip; {args.workers} API workers / consumer processes per broker")  # fmt: skip
        rates: dict[str, list[float]] = {name: [] for name in paths}
        order = list(paths)
        for r in range(args.rounds):
            for name in order[r % len(order):] + order[: r % len(order)]:  # rotate: no path always first
                payloads = bodies(f"bench-{name}", n, dim, start, seed=r)
                rates[name].append(paths[name].run(payloads))
            print(f"round {r + 1}: " + ", ".join(f"{name} {rates[name][-1]:,.0f}/s" for name in order), flush=True)
        for broker in wanted:
            expected = args.rounds * n
            assert count(dsn, f"bench-{broker}") == expected, f"{broker}: {count(dsn, f'bench-{broker}')} of {expected} stored"
        median = {name: statistics.median(v) for name, v in rates.items()}

        lags = {}
        for broker in wanted:
            path = paths[broker]
            assert isinstance(path, BusPath)
            lags[broker] = path.lag(dsn, 0.8 * median[broker], args.lag_seconds, dim)

        print(f"\n{'path (median of rounds)':<26} {'records/s':>10} {'vs HTTP':>8}   rounds")
        for name, path in paths.items():
            ratio = "" if name == "http" else f"{median[name] / median['http']:>8.0%}"
            each = ", ".join(f"{v:,.0f}" for v in rates[name])
            print(f"{path.label:<26} {median[name]:>10,.0f} {ratio:>8}   {each}")
        print(f"\n{'lag at 80 % of the rate':<26} {'offered/s':>10} {'p50 s':>7} {'p99 s':>7} {'max s':>7} {'batch p99 s':>12} {'records':>8}")
        for broker, (p50, p99, worst, rows, offered, batch) in lags.items():
            print(f"{broker:<26} {offered:>10,.0f} {p50:>7.3f} {p99:>7.3f} {worst:>7.3f} {'<= ' + format(batch, 'g'):>12} {rows:>8}")
        print(orjson.dumps({"rates": rates, "lag": lags}).decode())
    finally:
        with contextlib.ExitStack() as stack:  # everything is closed, whatever fails first
            stack.callback(drop_scratch_database, args.database_url, scratch)
            if brokers is not None:
                stack.callback(brokers.close)
            for path in paths.values():
                stack.callback(path.close)


if __name__ == "__main__":
    main()
