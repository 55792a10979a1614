"""Ingest throughput: predictions/s through the real HTTP API into PostgreSQL, next to the ceiling.

Two workloads, batches of 1000 records, encoded exactly as the SDK sends them (base64 arrays,
gzip level 1):
  * classification, 10 classes, no embedding;
  * the same with a 512-d float16 embedding.

For each, the same run measures
  * cvmon: `cvmon serve --workers W` on loopback, C client threads posting pre-built request
    bodies (so the client costs next to nothing), every record validated, deduplicated and stored;
  * the ceiling: raw psycopg binary COPY of the same rows into the same tables, one batch per
    transaction, no validation, no HTTP.
and prints both and the ratio.

    python bench/ingest.py [--records 200000] [--workers 3] [--clients 4] [--database-url URL]
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson
import psycopg
from psycopg.types.json import Jsonb

from monitor.sdk._records import encode as sdk_encode
from monitor.server.store import migrate
from monitor.server.store.engine import make_engine
from monitor.server.store.partitions import PartitionManager
from monitor.server.store.writes import (
    _EMBEDDING_PG_TYPES,
    _PREDICTION_PG_TYPES,
    EMBEDDING_COLUMNS,
    PREDICTION_COLUMNS,
    embedding_row,
    prediction_row,
)
from monitor.wire import ModelSpec, parse_prediction
from testkit.scratch import create_scratch_database, drop_scratch_database, libpq_dsn, sqlalchemy_url

ROOT = Path(__file__).resolve().parents[1]

CLASSES = [f"class-{i}" for i in range(10)]
BATCH = 1000


def records(model: str, n: int, embedding_dim: int, start: datetime, seed: int) -> Iterator[dict]:
    """Records as an inference service logs them (numpy arrays, Unix-seconds timestamps)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, len(CLASSES))).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    emb = rng.normal(size=(n, embedding_dim)).astype(np.float32) if embedding_dim else None
    run = uuid.uuid4().hex[:8]
    t0 = start.timestamp()
    for i in range(n):
        rec = {
            "prediction_id": f"{run}-{i}",
            "timestamp": t0 + i / 1000,
            "latency_ms": float(10 + i % 7),
            "cohort": {"camera": f"cam-{i % 8}"},
            "probabilities": probs[i],
        }
        if emb is not None:
            rec["embedding"] = emb[i]
        yield rec


def bodies(model: str, n: int, dim: int, start: datetime, seed: int) -> list[bytes]:
    """Request bodies exactly as the SDK sends them: its record encoding (base64 float32
    probabilities, float16 embeddings), batches of 1000, gzip level 1."""
    encoded = [sdk_encode(r, model, "v1", "float16") for r in records(model, n, dim, start, seed)]
    return [
        gzip.compress(b'{"records":[' + b",".join(encoded[i : i + BATCH]) + b"]}", compresslevel=1, mtime=0)
        for i in range(0, n, BATCH)
    ]


def post_all(port: int, key: str, payloads: list[bytes], clients: int) -> float:
    """Post every body from `clients` keep-alive connections; returns the seconds taken."""
    queue = list(reversed(payloads))
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Authorization": f"Bearer {key}"}
        while True:
            with lock:
                if not queue:
                    break
                body = queue.pop()
            conn.request("POST", "/v1/predictions", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            if resp.status != 200 or orjson.loads(data)["accepted"] != BATCH:
                errors.append(f"{resp.status} {data[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} failed batches, first: {errors[0]}")
    return elapsed


def copy_ceiling(dsn: str, model: str, n: int, dim: int, start: datetime) -> float:
    """Raw binary COPY of the same rows (validated up front, outside the timing)."""
    spec = ModelSpec.create(model, "classification", CLASSES)
    now = datetime.now(UTC)
    wire = (orjson.loads(sdk_encode(r, model, "v1", "float16")) for r in records(model, n, dim, start, seed=99))
    preds = [parse_prediction(r, {model: spec}.get, now=now) for r in wire]
    rows = [prediction_row(p, now, Jsonb(p.cohort)) for p in preds]
    embs = [embedding_row(p) for p in preds if p.embedding is not None]
    with psycopg.connect(dsn) as conn:
        t0 = time.perf_counter()
        for i in range(0, n, BATCH):
            with conn.cursor() as cur:
                with cur.copy(f"COPY predictions ({', '.join(PREDICTION_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                    cp.set_types(list(_PREDICTION_PG_TYPES))
                    for row in rows[i : i + BATCH]:
                        cp.write_row(row)
                if embs:
                    with cur.copy(f"COPY embeddings ({', '.join(EMBEDDING_COLUMNS)}) FROM STDIN (FORMAT BINARY)") as cp:
                        cp.set_types(list(_EMBEDDING_PG_TYPES))
                        for row in embs[i : i + BATCH]:
                            cp.write_row(row)
            conn.commit()
        return time.perf_counter() - t0


def start_server(url: str, port: int, workers: int) -> subprocess.Popen:
    env = {**os.environ, "CVMON_DATABASE_URL": url, "CVMON_SCHEDULER": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.server.cli", "serve", "--port", str(port), "--workers", str(workers), "--log-level", "warning"],
        env=env,
    )
    for _ in range(300):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/readyz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=200_000, help="records per workload (default 200000)")
    # three workers on two cores: while one waits on PostgreSQL, the others parse
    parser.add_argument("--workers", type=int, default=3, help="API worker processes (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client connections (default 4)")
    parser.add_argument("--database-url", default=os.environ.get("CVMON_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="an existing PostgreSQL database; a scratch database is created next to it")  # fmt: skip
    args = parser.parse_args()
    n = args.records - args.records % BATCH

    scratch = create_scratch_database(args.database_url, "cvmon_bench_ingest")
    sa_url, dsn = sqlalchemy_url(scratch), libpq_dsn(scratch)
    proc = None
    try:
        engine = make_engine(sa_url)
        migrate.upgrade(engine)
        start = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=2)
        PartitionManager(engine).ensure_ahead(start, days_ahead=2)
        from monitor.server.services.keys import create_key
        from monitor.server.services.models import register_model
        from monitor.server.store.engine import write_transaction

        with write_transaction(engine) as conn:
            _, key = create_key(conn, scopes=["ingest"], models=None, name="bench", now=datetime.now(UTC))
            for m in ("bench-http", "bench-copy"):
                register_model(conn, m, "classification", CLASSES, 0.5, now=datetime.now(UTC))
        port = 18000 + os.getpid() % 1000
        proc = start_server(sa_url, port, args.workers)
        print(f"{n} records per workload, batches of {BATCH}; server: {args.workers} workers; {args.clients} client connections")
        print(f"{'workload':<34} {'cvmon HTTP rec/s':>17} {'binary COPY rec/s':>18} {'ratio':>7}")
        for label, dim in (("classification, 10 classes", 0), ("+ 512-d float16 embedding", 512)):
            payloads = bodies("bench-http", n, dim, start, seed=dim)
            post_all(port, key, payloads[:2], 1)  # warm up the workers' connection pools
            http_s = post_all(port, key, payloads[2:], args.clients)
            http_rate = (n - 2 * BATCH) / http_s
            copy_rate = n / copy_ceiling(dsn, "bench-copy", n, dim, start)
            print(f"{label:<34} {http_rate:>17,.0f} {copy_rate:>18,.0f} {http_rate / copy_rate:>7.0%}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        drop_scratch_database(args.database_url, scratch)


if __name__ == "__main__":
    main()
