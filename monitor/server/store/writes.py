"""Writes of predictions, ground truth and their bookkeeping rows, inside the caller's transaction.

The repository half of ingest: how rows are shaped, claimed, copied and upserted. Which rows to
write, and in which order, is :mod:`monitor.server.services.ingest`'s business; nothing here
commits.

``prediction_ids`` holds the identity of every stored prediction, ``(model, prediction_id)``
whatever its timestamp (the partitioned ``predictions`` table can only be unique per day): a
batch first claims its ids there (:func:`claim_prediction_ids`), and only the rows whose claim
succeeded are copied. Two transactions claiming one id serialise on its index entry, so exactly
one of them stores it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.store import tables as t
from monitor.server.store.reads import by_keys
from monitor.wire import GroundTruth, Prediction

# --------------------------------------------------------------------------------------------
# packing


def pack(arr: np.ndarray | None, dtype: str) -> bytes | None:
    return None if arr is None else np.ascontiguousarray(arr, dtype=dtype).tobytes()


def _embedding(arr: np.ndarray) -> tuple[int, bytes]:
    """float16 stays float16 (half the bytes); anything else is stored as float32."""
    if arr.dtype == np.float16:
        return 2, arr.astype("<f2", copy=False).tobytes()
    return 4, arr.astype("<f4", copy=False).tobytes()


PREDICTION_COLUMNS = (
    "model", "prediction_id", "ts", "model_version", "received_at", "status", "latency_ms", "request_id",
    "input_hash", "cohort", "trace_id", "span_id", "predicted_class", "confidence", "probabilities", "boxes",
    "box_classes", "box_scores", "device", "batch_size", "cpu_time_ms", "gpu_utilization_ratio", "gpu_memory_bytes",
)  # fmt: skip
_PREDICTION_PG_TYPES = (
    "text", "text", "timestamptz", "text", "timestamptz", "int2", "float4", "text", "text", "jsonb", "text",
    "text", "int4", "float4", "bytea", "bytea", "bytea", "bytea", "text", "int4", "float4", "float4", "int8",
)  # fmt: skip
_NO_RESOURCES = (None, None, None, None, None)
EMBEDDING_COLUMNS = ("model", "ts", "prediction_id", "model_version", "dtype", "embedding")
_EMBEDDING_PG_TYPES = ("text", "timestamptz", "text", "text", "int2", "bytea")


def prediction_row(p: Prediction, received_at: datetime, cohort: Any) -> tuple[Any, ...]:
    """The row of ``predictions`` for one record, in :data:`PREDICTION_COLUMNS` order."""
    r = p.resources
    return (
        p.model, p.prediction_id, p.ts, p.model_version, received_at, p.status, p.latency_ms, p.request_id,
        p.input_hash, cohort, p.trace_id, p.span_id, p.predicted_class, p.confidence,
        pack(p.probabilities, "<f4"), pack(p.boxes, "<f4"), pack(p.box_classes, "<i4"), pack(p.box_scores, "<f4"),
        *(_NO_RESOURCES if r is None else
          (r.device, r.batch_size, r.cpu_time_ms, r.gpu_utilization_ratio, r.gpu_memory_bytes)),
    )  # fmt: skip


def embedding_row(p: Prediction) -> tuple[Any, ...]:
    assert p.embedding is not None
    code, blob = _embedding(p.embedding)
    return (p.model, p.ts, p.prediction_id, p.model_version, code, blob)


def _pg(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _insert(pg: bool, table: sa.Table) -> Any:
    return pg_insert(table) if pg else sqlite_insert(table)


def _in(column: Any, values: list[str], pg: bool) -> Any:
    if pg:
        return column == sa.any_(sa.bindparam(f"in_{column.name}", values, type_=ARRAY(sa.Text)))
    return column.in_(values)


# --------------------------------------------------------------------------------------------
# predictions


def claim_prediction_ids(conn: Connection, model: str, claims: Sequence[tuple[str, datetime]]) -> set[str]:
    """Claim the identities ``(prediction_id, ts)`` of ``model``; returns the ids claimed now (the
    others are stored already, or claimed by a concurrent transaction that committed first).

    Claimed in id order, so two batches with overlapping ids wait for each other, never deadlock.
    """
    if not claims:
        return set()
    ordered = sorted(claims)
    ids = t.prediction_ids.c
    if _pg(conn):
        source = sa.select(
            sa.literal(model, t.ModelName).label("model"),
            sa.func.unnest(sa.bindparam("ids", [pid for pid, _ in ordered], type_=ARRAY(sa.Text))).label("prediction_id"),
            sa.func.unnest(sa.bindparam("ts", [ts for _, ts in ordered], type_=ARRAY(sa.DateTime(timezone=True)))).label("ts"),
        )
        stmt = (
            pg_insert(t.prediction_ids)
            .from_select(["model", "prediction_id", "ts"], source)
            .on_conflict_do_nothing()
            .returning(ids.prediction_id)
        )
        return set(conn.execute(stmt).scalars())
    stmt = sqlite_insert(t.prediction_ids).on_conflict_do_nothing().returning(ids.prediction_id)
    return set(conn.execute(stmt, [{"model": model, "prediction_id": pid, "ts": ts} for pid, ts in ordered]).scalars())


def insert_predictions(conn: Connection, new: Sequence[Prediction], now: datetime) -> None:
    """Store new predictions (their identities claimed in this transaction) and their embeddings:
    binary COPY on PostgreSQL, executemany on SQLite."""
    if not new:
        return
    if _pg(conn):
        import orjson
        from psycopg.types.json import Jsonb

        raw = conn.connection.driver_connection
        with raw.cursor() as cur:  # type: ignore[union-attr]
            _copy(cur, "predictions", PREDICTION_COLUMNS, _PREDICTION_PG_TYPES,
                  (prediction_row(p, now, None if p.cohort is None else Jsonb(p.cohort, orjson.dumps)) for p in new))  # fmt: skip
            embedded = [p for p in new if p.embedding is not None]
            if embedded:
                _copy(cur, "embeddings", EMBEDDING_COLUMNS, _EMBEDDING_PG_TYPES, (embedding_row(p) for p in embedded))
        return
    conn.execute(sa.insert(t.predictions), [dict(zip(PREDICTION_COLUMNS, prediction_row(p, now, p.cohort), strict=True)) for p in new])
    embedded_rows = [dict(zip(EMBEDDING_COLUMNS, embedding_row(p), strict=True)) for p in new if p.embedding is not None]
    if embedded_rows:
        conn.execute(sa.insert(t.embeddings), embedded_rows)


def _copy(cur: Any, table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def prediction_keys(conn: Connection, model: str, ids: list[str]) -> dict[str, tuple[datetime, str]]:
    """prediction id -> (ts, version) of the stored predictions of ``model`` among ``ids``: their
    identities give the time, and the time one primary-key probe each."""
    i, p = t.prediction_ids.c, t.predictions
    keys = sa.select(i.prediction_id.label("pid"), i.ts.label("ts")).where(i.model == model, _in(i.prediction_id, ids, _pg(conn)))
    query = sa.select(p.c.prediction_id, p.c.ts, p.c.model_version)
    rows = conn.execute(by_keys(conn, query, p, p.c.ts, model, keys.subquery("keys")))
    return {r.prediction_id: (r.ts, r.model_version) for r in rows}


# --------------------------------------------------------------------------------------------
# counters and marks


def add_version_counts(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Add to the per-version counters (``predictions``, ``errors``, ``labelled``, widening
    ``first_seen`` / ``last_seen``), rows in key order. A version gets its row with its first
    prediction, so a row with only ``labelled`` always updates an existing one."""
    if not rows:
        return
    v = t.model_versions
    stmt = _insert(_pg(conn), v)
    stmt = stmt.on_conflict_do_update(
        index_elements=[v.c.model, v.c.version],
        set_={
            "predictions": v.c.predictions + stmt.excluded.predictions,
            "errors": v.c.errors + stmt.excluded.errors,
            "labelled": v.c.labelled + stmt.excluded.labelled,
            "first_seen": sa.case((stmt.excluded.first_seen < v.c.first_seen, stmt.excluded.first_seen), else_=v.c.first_seen),
            "last_seen": sa.case((stmt.excluded.last_seen > v.c.last_seen, stmt.excluded.last_seen), else_=v.c.last_seen),
        },
    )
    conn.execute(stmt, sorted(rows, key=lambda r: (r["model"], r["version"])))


def add_ground_truth_counts(conn: Connection, counts: dict[str, int]) -> None:
    """Add first label revisions received to each model's counter, models in name order."""
    m = t.models
    for model, n in sorted(counts.items()):
        if n:
            conn.execute(sa.update(m).where(m.c.model == model).values(ground_truth=m.c.ground_truth + n))


#: ``dirty_hours.marked_at`` of an hour whose state is current but whose windows are not refreshed
#: yet (monitor.server.services.evaluation). Writers mark hours with the time of the write, never this.
WINDOWS_PENDING = datetime(1970, 1, 1, tzinfo=UTC)


def mark_dirty(conn: Connection, hours: set[tuple[str, datetime]], now: datetime, *, pg: bool | None = None) -> None:
    """Mark hours as changed, in key order. Every mark of an hour is later than the one before (by
    a microsecond when the clocks agree), so the evaluate job can consume exactly the mark it saw
    by its value, outside its snapshot, and a write it did not see leaves the hour marked."""
    if not hours:
        return
    pg = _pg(conn) if pg is None else pg
    d = t.dirty_hours
    stmt = _insert(pg, d)
    # timestamptz on PostgreSQL, integer microseconds on SQLite
    later: sa.ColumnClause[datetime] = sa.literal_column("dirty_hours.marked_at + " + ("interval '1 microsecond'" if pg else "1"))
    stmt = stmt.on_conflict_do_update(
        index_elements=[d.c.model, d.c.hour_start],
        set_={"marked_at": sa.case((stmt.excluded.marked_at > d.c.marked_at, stmt.excluded.marked_at), else_=later)},
    )
    conn.execute(stmt, [{"model": m, "hour_start": h, "marked_at": now} for m, h in sorted(hours)])


def mark_windows_pending(conn: Connection, model: str, hours: Sequence[datetime]) -> None:
    """Mark hours whose states changed as waiting for their windows (:data:`WINDOWS_PENDING`),
    unless they are marked dirty already."""
    values = [{"model": model, "hour_start": hour, "marked_at": WINDOWS_PENDING} for hour in sorted(hours)]
    if values:
        conn.execute(_insert(_pg(conn), t.dirty_hours).on_conflict_do_nothing(), values)


def hours_awaiting_recompute(conn: Connection, model: str, hours: list[datetime]) -> set[datetime]:
    """Those of ``hours`` that are marked dirty (to be recomputed from their rows)."""
    d = t.dirty_hours.c
    return set(
        conn.execute(sa.select(d.hour_start).where(d.model == model, d.hour_start.in_(hours), d.marked_at != WINDOWS_PENDING)).scalars()
    )


def log_increments(conn: Connection, model: str, keys: Sequence[tuple[datetime, str]], now: datetime) -> None:
    """Record predictions (time, id) that just got their first label, for the evaluate job."""
    rows = [{"model": model, "prediction_ts": ts, "prediction_id": pid, "logged_at": now} for ts, pid in sorted(keys)]
    if rows:
        conn.execute(_insert(_pg(conn), t.label_increments).on_conflict_do_nothing(), rows)


# --------------------------------------------------------------------------------------------
# ground truth

GT_VALUES = ("labelled_at", "received_at", "label", "boxes", "box_classes", "iscrowd")


def ground_truth_values(g: GroundTruth, received_at: datetime) -> dict[str, Any]:
    return {
        "labelled_at": g.labelled_at,
        "received_at": received_at,
        "label": g.label,
        "boxes": pack(g.boxes, "<f4"),
        "box_classes": pack(g.box_classes, "<i4"),
        "iscrowd": pack(g.iscrowd, "u1"),
    }


def stored_ground_truth(conn: Connection, model: str, keys: list[tuple[datetime, str]]) -> dict[str, Any]:
    """The stored revision of each labelled prediction among the keys (time, id)."""
    if not keys:
        return {}
    gt = t.ground_truth.c
    query = sa.select(gt.prediction_id, *(gt[c] for c in GT_VALUES))
    return {r.prediction_id: r for r in conn.execute(by_keys(conn, query, t.ground_truth, gt.prediction_ts, model, keys))}


def stored_pending(conn: Connection, model: str, ids: list[str]) -> dict[str, Any]:
    """The waiting revision of each of ``ids`` whose prediction has not arrived."""
    pend = t.ground_truth_pending.c
    rows = conn.execute(sa.select(pend.prediction_id, *(pend[c] for c in GT_VALUES)).where(pend.model == model, _in(pend.prediction_id, ids, _pg(conn))))
    return {r.prediction_id: r for r in rows}


def take_pending(conn: Connection, model: str, ids: list[str]) -> list[dict[str, Any]]:
    """Delete and return the waiting revisions of ``ids`` (their predictions have arrived)."""
    pend = t.ground_truth_pending
    cond = sa.and_(pend.c.model == model, _in(pend.c.prediction_id, sorted(ids), _pg(conn)))
    waiting = [dict(r) for r in conn.execute(sa.select(pend).where(cond).order_by(pend.c.prediction_id)).mappings()]
    if waiting:
        conn.execute(sa.delete(pend).where(cond))
    return waiting


def pending_with_predictions(conn: Connection) -> list[tuple[str, str, datetime, str]]:
    """(model, prediction id, ts, version) of waiting ground truth whose prediction is stored."""
    p, pend = t.predictions.c, t.ground_truth_pending.c
    return [
        (r.model, r.prediction_id, r.ts, r.model_version)
        for r in conn.execute(
            sa.select(pend.model, pend.prediction_id, p.ts, p.model_version).select_from(
                t.ground_truth_pending.join(t.predictions, sa.and_(p.model == pend.model, p.prediction_id == pend.prediction_id))
            )
        )
    ]


def upsert_ground_truth(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Store matched revisions (rows carry ``prediction_ts``)."""
    _upsert_newest(conn, t.ground_truth, ["model", "prediction_ts", "prediction_id"], rows)


def upsert_pending(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Store revisions whose prediction has not arrived."""
    _upsert_newest(conn, t.ground_truth_pending, ["model", "prediction_id"], rows)


def _upsert_newest(conn: Connection, table: sa.Table, keys: list[str], rows: list[dict[str, Any]]) -> None:
    """Insert, or replace the stored revision when this one is at least as new (race-safe), rows
    in key order."""
    if not rows:
        return
    stmt = _insert(_pg(conn), table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c: stmt.excluded[c] for c in GT_VALUES},
        where=stmt.excluded.labelled_at >= table.c.labelled_at,
    )
    conn.execute(stmt, sorted(rows, key=lambda r: (r["model"], r["prediction_id"])))
