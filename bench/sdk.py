"""What the SDK costs an inference service: per-call cost on the caller's thread, and throughput.

1. Per call, on the caller's thread: ``Client.log_classification`` (10 classes, with and without a
   512-d float32 embedding, with ``resources`` filled as the adapters fill them — one
   ``Resources`` shared by a call's predictions — and as a dict checked on every call), each call timed alone with ``time.perf_counter_ns`` (p50, p99 over
   ``--calls`` calls, garbage collector on, as in a real service), while the background sender
   runs — once against a null transport (answers 200 at once: the caller's cost alone) and once
   against a real local server (the sender competes with the caller for the GIL). In the same run
   and the same harness: ``queue.SimpleQueue.put``, prometheus_client ``Counter.inc`` and an empty
   call (the timer's own cost, included in every figure). With sample capture on
   (``samples=SamplePolicy``) and a 640×480 RGB frame passed as ``image``: a policy that keeps
   none of these images (the decision alone: rate, confidence), and a realistic one (1 % rate
   and a reservoir of 10 an hour: a few kept, their copies in the p99).
2. Sustained: records/s through the SDK into a local ``cvmon serve`` (a scratch SQLite database,
   or ``--database-url``): log as fast as possible, then ``flush()``; the clock stops when the
   server has acknowledged every record.

    python bench/sdk.py [--calls 100000] [--records 100000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from monitor.sdk import Client, MockTransport, Request, Resources, Response, SamplePolicy

ROOT = Path(__file__).resolve().parents[1]

CLASSES = 10
DIM = 512


def per_call(call: Callable[[], object], n: int) -> tuple[float, float]:
    """p50 and p99 in microseconds of ``n`` calls, each timed on its own."""
    clock = time.perf_counter_ns
    out = np.empty(n, dtype=np.int64)
    for _ in range(min(n, 2000)):  # warm-up: caches, lazy starts
        call()
    for i in range(n):
        t0 = clock()
        call()
        out[i] = clock() - t0
    return float(np.percentile(out, 50)) / 1000, float(np.percentile(out, 99)) / 1000


def _null(request: Request) -> Response:
    n = len(request.records())
    return Response(200, json.dumps({"accepted": n, "duplicates": 0, "rejected": []}).encode())


@contextmanager
def local_server(database_url: str | None) -> Iterator[tuple[str, str]]:
    """``cvmon serve`` on loopback; yields (url, ingest key)."""
    from monitor.server.services.keys import create_key
    from monitor.server.services.models import register_model
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine, write_transaction

    with tempfile.TemporaryDirectory() as tmp:
        url = database_url or f"sqlite:///{tmp}/bench.db"
        engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        migrate.upgrade(engine)
        with write_transaction(engine) as conn:
            register_model(conn, "bench-sdk", "classification", [f"c{i}" for i in range(CLASSES)], 0.5, now=datetime.now(UTC))
            _, key = create_key(conn, scopes=["ingest"], models=None, name="bench", now=datetime.now(UTC))
        engine.dispose()
        from testkit.servers import free_port

        port = free_port()
        env = {**os.environ, "CVMON_DATABASE_URL": url, "CVMON_SCHEDULER": "0"}
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.server.cli", "serve", "--port", str(port), "--log-level", "warning"],
            env=env, cwd=tmp,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}", key
        finally:
            proc.terminate()
            proc.wait(30)


def client(url: str, key: str | None, spool: str, *, null: bool, max_queue: int, samples: SamplePolicy | None = None) -> Client:
    return Client(url, api_key=key, model="bench-sdk", version=uuid.uuid4().hex[:8], classes=CLASSES, spool_dir=spool,
                  max_queue=max_queue, transport=MockTransport(_null) if null else None, exit_timeout=0,
                  samples=samples)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="timed calls per row")
    parser.add_argument("--records", type=int, default=100_000, help="records for the sustained rate")
    parser.add_argument("--database-url", default=None, help="the server's database (default: a scratch SQLite file)")
    args = parser.parse_args()

    from prometheus_client import CollectorRegistry, Counter

    rng = np.random.default_rng(0)
    logits = rng.normal(size=CLASSES)
    probs = (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)
    emb = rng.normal(size=DIM).astype(np.float32)
    cohort = {"camera": "cam-3"}
    # what an adapter attaches on a GPU: every field filled
    res = Resources(device="NVIDIA L4", batch_size=8, cpu_time_ms=1.25, gpu_utilization_ratio=0.62, gpu_memory_bytes=3 << 30)
    res_dict = res.to_wire()
    n = args.calls
    rows: list[tuple[str, float, float]] = []

    def row(name: str, call: Callable[[], object], drain: Client | None = None) -> None:
        if drain is not None:  # the previous row's backlog would compete with this one for the GIL
            drain.flush(600)
        p50, p99 = per_call(call, n)
        rows.append((name, p50, p99))
        print(f"  {name:<58} p50 {p50:7.2f} µs   p99 {p99:7.2f} µs", flush=True)

    print(f"per call on the caller's thread, {n} calls each (timer cost included in every figure):")
    row("empty call (timer floor)", lambda: None)
    q: queue.SimpleQueue[object] = queue.SimpleQueue()
    row("queue.SimpleQueue.put", lambda: q.put(probs))
    counter = Counter("bench_total", "bench", registry=CollectorRegistry())
    row("prometheus_client Counter.inc", counter.inc)
    with tempfile.TemporaryDirectory() as spool:
        # max_queue above the call count: no record is dropped, every call takes the full path.
        mon = client("http://null.invalid", None, spool, null=True, max_queue=n + 10_000)
        row("log_classification, null transport", lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort), drain=mon)
        row("log_classification + 512-d float32 embedding, null transport",
            lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, embedding=emb), drain=mon)  # fmt: skip
        row("log_classification + resources, null transport",
            lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, resources=res), drain=mon)  # fmt: skip
        row("log_classification + resources as a dict, null transport",
            lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, resources=res_dict), drain=mon)  # fmt: skip
        mon.close(60)
        # sample capture on: none of these images is kept (top probability >= 0.1 with 10 classes)
        frame = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        mon = client("http://null.invalid", None, spool, null=True, max_queue=n + 10_000,
                     samples=SamplePolicy(rate=0.0, low_confidence=0.1))  # fmt: skip
        row("log_classification + image, capture on, none kept, null transport",
            lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, image=frame), drain=mon)  # fmt: skip
        mon.close(60)
        mon = client("http://null.invalid", None, spool, null=True, max_queue=n + 10_000,
                     samples=SamplePolicy(rate=0.01, low_confidence=0.1, reservoir_per_hour=10))  # fmt: skip
        row("log_classification + image, 1% + reservoir 10/h, null transport",
            lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, image=frame), drain=mon)  # fmt: skip
        mon.close(60)
        with local_server(args.database_url) as (url, key):
            mon = client(url, key, spool, null=False, max_queue=n + 10_000)
            row("log_classification, local server", lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort), drain=mon)
            row("log_classification + 512-d float32 embedding, local server",
                lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, embedding=emb), drain=mon)  # fmt: skip
            row("log_classification + resources, local server",
                lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, resources=res), drain=mon)  # fmt: skip
            mon.flush(600)
            mon.close(60)
            mon = client(url, key, spool, null=False, max_queue=n + 10_000, samples=SamplePolicy(rate=0.0, low_confidence=0.1))
            row("log_classification + image, capture on, none kept, local server",
                lambda: mon.log_classification(probs, latency_ms=12.1, cohort=cohort, image=frame), drain=mon)  # fmt: skip
            mon.flush(600)
            mon.close(60)
            counter_p50 = rows[2][1]
            print("ratio to Counter.inc (p50): " + ", ".join(f"{name.split(',')[0].replace('log_classification', 'log')}"
                  f"{' (' + name.split(', ')[-1] + ')' if ',' in name else ''} {p50 / counter_p50:.1f}x"
                  for name, p50, _ in rows[3:]))  # fmt: skip

            print(f"\nsustained, {args.records} records through the SDK into `cvmon serve` "
                  f"({args.database_url or 'scratch SQLite'}), timed to the last acknowledgement:")  # fmt: skip
            for label, embedding, dtype, resources in (
                ("no embedding", None, "float32", None),
                ("512-d float16 embedding", emb, "float16", None),
                ("resources", None, "float32", res),
            ):
                mon = Client(url, api_key=key, model="bench-sdk", version=uuid.uuid4().hex[:8], classes=CLASSES,
                             spool_dir=spool, max_queue=args.records + 10_000, embedding_dtype=dtype, exit_timeout=0)  # fmt: skip
                t0 = time.perf_counter()
                for _ in range(args.records):
                    mon.log_classification(probs, latency_ms=12.1, cohort=cohort, embedding=embedding, resources=resources)
                logged = time.perf_counter() - t0
                ok = mon.flush(600)
                elapsed = time.perf_counter() - t0
                stats = mon.stats()
                mon.close(60)
                print(f"  {label:<26} {args.records / elapsed:9,.0f} records/s  (logging took {logged:.2f} s, "
                      f"all acknowledged: {ok}, sent={stats.sent} dropped={stats.dropped} spooled={stats.spooled})")  # fmt: skip


if __name__ == "__main__":
    main()
