"""Bytes per stored prediction on PostgreSQL (and SQLite), with and without a 512-d float16
embedding and ground truth.

Four workloads of N classification predictions (10 classes, a camera cohort, latency, base64
float32 probabilities as the SDK sends them), each written by cvmon's own ingest path (parse,
binary COPY) into a day of its own, so each lands in daily partitions of its own:

  * predictions only
  * + ground truth (a label for every prediction)
  * + a 512-d float16 embedding
  * + embedding + ground truth

For each it prints the on-disk bytes per prediction of every partitioned table — heap, TOAST and
indexes together (``pg_total_relation_size``), after VACUUM — and the total. The same rows are
written to one SQLite file per workload for comparison (file size after VACUUM / rows).

    python bench/size.py [--rows 100000] [--database-url postgresql://...] [--no-sqlite]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg

from monitor.sdk._records import encode as sdk_encode
from monitor.server.services.ingest import CohortPolicy, ingest_ground_truth, ingest_predictions
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.store import migrate
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager, partition_name
from testkit.scratch import create_scratch_database, drop_scratch_database, libpq_dsn, sqlalchemy_url

ROOT = Path(__file__).resolve().parents[1]

CLASSES = [f"class-{i}" for i in range(10)]
BATCH = 5000
WORKLOADS = (("predictions only", False, False), ("+ ground truth", False, True),
             ("+ 512-d float16 embedding", True, False), ("+ embedding + ground truth", True, True))  # fmt: skip
TABLES = ("predictions", "embeddings", "ground_truth")


def wire_records(model: str, n: int, embedding: bool, day: date, seed: int) -> list[dict]:
    """Records exactly as the SDK puts them on the wire (its own encoder), parsed back to JSON."""
    import orjson

    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, len(CLASSES))).astype(np.float32)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    t0 = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    prefix = uuid.uuid4().hex[:16]  # the SDK's ids: a random per-process prefix and a counter
    out = []
    for i in range(n):
        rec = {"prediction_id": f"{prefix}-{i:x}", "timestamp": t0 + i * 80_000 / n, "latency_ms": float(rng.uniform(5, 40)),
               "cohort": {"camera": f"cam-{i % 16:02d}"}, "probabilities": probs[i]}  # fmt: skip
        if embedding:
            rec["embedding"] = rng.normal(size=512).astype(np.float32)
        out.append(orjson.loads(sdk_encode(rec, model, "v1.4.2", "float16")))
    return out


def write(url: str, model: str, records: list[dict], labels: bool, now: datetime) -> float:
    engine = make_engine(url)
    settings = Settings(database_url=url)
    parts = PartitionManager(engine)
    t0 = time.perf_counter()
    try:
        for i in range(0, len(records), BATCH):
            batch = records[i : i + BATCH]
            written = ingest_predictions(engine, batch, now=now, partitions=parts, policy=CohortPolicy(settings))
            assert written.accepted == len(batch), written.rejected[:3]
            if labels:
                gts = [
                    {"prediction_id": r["prediction_id"], "model": model, "label": i % len(CLASSES)}
                    for i, r in enumerate(batch)
                ]
                assert ingest_ground_truth(engine, gts, now=now).accepted == len(batch)
    finally:
        engine.dispose()
    return time.perf_counter() - t0


def pg_sizes(dsn: str, day: date) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        out = {}
        for table in TABLES:
            name = partition_name(table, day)
            conn.execute(f'VACUUM (ANALYZE) "{name}"')
            out[table] = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (name,)).fetchone()[0]
        return out


def pg_empty_sizes(dsn: str, day: date) -> dict[str, int]:
    """An empty partition still has pages (its index root): subtracted from the figures."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return {
            t: conn.execute("SELECT pg_total_relation_size(%s::regclass)", (partition_name(t, day),)).fetchone()[0]
            for t in TABLES
        }


def sqlite_size(records: list[dict], model: str, labels: bool, now: datetime) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "size.db"
        url = f"sqlite:///{path}"
        engine = make_engine(url)
        migrate.upgrade(engine)
        with write_transaction(engine) as conn:
            register_model(conn, model, "classification", CLASSES, 0.5, now=now)
        engine.dispose()
        empty = path.stat().st_size
        write(url, model, records, labels, now)
        raw = sqlite3.connect(path, isolation_level=None)
        raw.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        raw.execute("VACUUM")
        raw.close()
        return path.stat().st_size - empty


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000, help="predictions per workload (default 100000)")
    parser.add_argument("--database-url", default=os.environ.get("CVMON_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
                        help="an existing PostgreSQL database; a scratch database is created next to it and dropped")  # fmt: skip
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite comparison")
    args = parser.parse_args()

    scratch = create_scratch_database(args.database_url, "cvmon_bench_size")
    sa_url, dsn = sqlalchemy_url(scratch), libpq_dsn(scratch)
    now = datetime.now(UTC)
    try:
        engine = make_engine(sa_url)
        migrate.upgrade(engine)
        with write_transaction(engine) as conn:
            register_model(conn, "size-bench", "classification", CLASSES, 0.5, now=now)
        engine.dispose()
        print(f"{args.rows} classification predictions per workload (10 classes, camera cohort, latency), "
              f"written by cvmon's ingest path; bytes per prediction, heap + TOAST + indexes, after VACUUM\n")  # fmt: skip
        head = f"{'workload':<28} {'predictions':>12} {'embeddings':>11} {'ground_truth':>13} {'total':>8}"
        print(head + ("   SQLite file" if not args.no_sqlite else ""))
        for k, (label, embedding, labels) in enumerate(WORKLOADS):
            day = (now - timedelta(days=2 + k)).date()
            part_engine = make_engine(sa_url)
            PartitionManager(part_engine).ensure_days([day])
            part_engine.dispose()
            empty = pg_empty_sizes(dsn, day)
            records = wire_records("size-bench", args.rows, embedding, day, seed=k)
            write(sa_url, "size-bench", records, labels, now)
            sizes = pg_sizes(dsn, day)
            per = {t: (sizes[t] - empty[t]) / args.rows for t in TABLES}
            line = (f"{label:<28} {per['predictions']:>12.0f} {per['embeddings']:>11.0f} {per['ground_truth']:>13.0f} "
                    f"{sum(per.values()):>8.0f}")  # fmt: skip
            if not args.no_sqlite:
                line += f"   {sqlite_size(records, 'size-bench', labels, now) / args.rows:>11.0f}"
            print(line, flush=True)
    finally:
        drop_scratch_database(args.database_url, scratch)


if __name__ == "__main__":
    main()
