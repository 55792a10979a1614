"""Bulk, idempotent writes of predictions and ground truth.

Predictions are identified by ``(model, prediction_id)``. A retried record is a duplicate, never
a second row: the writer looks up the batch's ids (inside the time range of the batch, which
pins the partitions, since a retry carries the same timestamp; across all time for records whose
timestamp the server filled in), then bulk-writes the new rows — binary ``COPY`` on PostgreSQL,
``executemany`` on SQLite. If a concurrent batch inserted the same row between lookup and COPY,
the COPY fails on the primary key and the batch is rewritten row by row with
``ON CONFLICT DO NOTHING`` — the slow path only runs under that race.

Ground truth is a series of revisions per prediction; the newest ``labelled_at`` wins and an
identical or older revision counts as a duplicate. It may arrive before its prediction: it then
waits in ``ground_truth_pending`` and moves to ``ground_truth`` in the transaction that stores the
prediction.

Every write also keeps the per-version counters and marks the touched hours of prediction time
dirty for the evaluation jobs. The caller owns nothing here: each function is one transaction.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Connection, Engine
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from monitor.server.slo import events as slo_events
from monitor.server.slo.spec import SLO
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager
from monitor.server.store.reads import by_keys
from monitor.wire import GroundTruth, Prediction


@dataclass(frozen=True, slots=True)
class WriteResult:
    accepted: int
    duplicates: int


def hour_floor(ts: datetime) -> datetime:
    return ts.replace(minute=0, second=0, microsecond=0)


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


# --------------------------------------------------------------------------------------------
# predictions


def write_predictions(
    engine: Engine, preds: Sequence[Prediction], *, now: datetime, partitions: PartitionManager, slos: Sequence[SLO] = ()
) -> WriteResult:
    """Store a validated batch; returns how many rows were new and how many were duplicates.

    ``slos``: the configured SLOs, whose events the new rows are counted as in this transaction.
    """
    unique: dict[tuple[str, str], Prediction] = {}
    for p in preds:
        unique.setdefault((p.model, p.prediction_id), p)
    duplicates = len(preds) - len(unique)
    if not unique:
        return WriteResult(0, duplicates)
    partitions.ensure_timestamps(p.ts for p in unique.values())
    pg = engine.dialect.name == "postgresql"
    try:
        new = _write_new(engine, unique, now, slos, pg=pg, row_by_row=False)
    except IntegrityError:
        # A concurrent batch stored some of these ids between our lookup and the COPY, which
        # aborted the transaction: redo the batch with row-wise ON CONFLICT DO NOTHING.
        new = _write_new(engine, unique, now, slos, pg=pg, row_by_row=True)
    partitions.note_written(p.ts for p in new)
    return WriteResult(len(new), len(preds) - len(new))


def _write_new(
    engine: Engine, unique: dict[tuple[str, str], Prediction], now: datetime, slos: Sequence[SLO], *, pg: bool, row_by_row: bool
) -> list[Prediction]:
    """One transaction: find the ids already stored, write the others, count and mark them."""
    with write_transaction(engine) as conn:
        existing = _existing_predictions(conn, list(unique.values()), pg=pg)
        new = [p for key, p in unique.items() if key not in existing]
        if new:
            new = _insert_predictions(conn, new, now, pg=pg, row_by_row=row_by_row)
            adopted = _after_predictions(conn, new, now, pg=pg)
            # SLO events: the new predictions, and the labels that were waiting for them
            slo_events.count_predictions(conn, slos, new, now, pg=pg)
            for model, keys in adopted.items():
                slo_events.count_labels(conn, slos, model, keys, now, pg=pg)
    return new


def _existing_predictions(conn: Connection, preds: list[Prediction], *, pg: bool) -> set[tuple[str, str]]:
    by_model: dict[str, list[Prediction]] = defaultdict(list)
    for p in preds:
        by_model[p.model].append(p)
    found: set[tuple[str, str]] = set()
    for model, group in by_model.items():
        timed = [p for p in group if not p.ts_defaulted]
        # A retry of a record with a client timestamp has the same timestamp: look only inside the
        # batch's time range (on PostgreSQL that prunes the scan to one or two partitions).
        if timed:
            lo, hi = min(p.ts for p in timed), max(p.ts for p in timed)
            found.update(_lookup(conn, model, [p.prediction_id for p in timed], pg=pg, ts_range=(lo, hi)))
        untimed = [p for p in group if p.ts_defaulted]
        if untimed:
            ids = [p.prediction_id for p in untimed]
            if pg:  # serialise concurrent retries of the same id: their timestamps differ
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:m), hashtext(i)) FROM unnest(CAST(:ids AS text[])) i"),
                    {"m": model, "ids": sorted(ids)},
                )
            found.update(_lookup(conn, model, ids, pg=pg, ts_range=None))
    return found


def _lookup(
    conn: Connection, model: str, ids: list[str], *, pg: bool, ts_range: tuple[datetime, datetime] | None
) -> Iterable[tuple[str, str]]:
    p = t.predictions.c
    query = sa.select(p.prediction_id).where(p.model == model)
    if pg:
        query = query.where(p.prediction_id == sa.any_(sa.bindparam("ids", ids, type_=sa.ARRAY(sa.Text))))
    else:
        query = query.where(p.prediction_id.in_(ids))
    if ts_range is not None:
        query = query.where(p.ts.between(*ts_range))
    return ((model, pid) for pid in conn.execute(query).scalars())


def _insert_predictions(
    conn: Connection, new: list[Prediction], now: datetime, *, pg: bool, row_by_row: bool
) -> list[Prediction]:
    if pg:
        return _copy_predictions(conn, new, now, row_by_row=row_by_row)
    rows = [dict(zip(PREDICTION_COLUMNS, prediction_row(p, now, p.cohort), strict=True)) for p in new]
    # the write lock held since the lookup makes conflicts impossible here; RETURNING keeps the
    # count honest all the same
    stmt = sqlite_insert(t.predictions).on_conflict_do_nothing().returning(t.predictions.c.prediction_id)
    inserted = set(conn.execute(stmt, rows).scalars())
    new = [p for p in new if p.prediction_id in inserted]
    embedded = [dict(zip(EMBEDDING_COLUMNS, embedding_row(p), strict=True)) for p in new if p.embedding is not None]
    if embedded:
        conn.execute(sqlite_insert(t.embeddings).on_conflict_do_nothing(), embedded)
    return new


def _copy_predictions(conn: Connection, new: list[Prediction], now: datetime, *, row_by_row: bool) -> list[Prediction]:
    import orjson
    import psycopg
    from psycopg.types.json import Jsonb

    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection)
    if row_by_row:
        new = _insert_on_conflict(conn, new, now)
    else:
        # no savepoint around the COPY (two round trips a batch): a duplicate key aborts the whole
        # transaction, and write_predictions redoes the batch row by row
        try:
            with raw.cursor() as cur:
                _copy(cur, "predictions", PREDICTION_COLUMNS, _PREDICTION_PG_TYPES,
                      (prediction_row(p, now, None if p.cohort is None else Jsonb(p.cohort, orjson.dumps)) for p in new))  # fmt: skip
        except psycopg.errors.UniqueViolation as exc:
            raise IntegrityError("COPY predictions", None, exc) from exc
    embedded = [p for p in new if p.embedding is not None]
    if embedded:
        with raw.cursor() as cur:
            _copy(cur, "embeddings", EMBEDDING_COLUMNS, _EMBEDDING_PG_TYPES, (embedding_row(p) for p in embedded))
    return new


def _copy(cur: Any, table: str, columns: Sequence[str], types: Sequence[str], rows: Iterable[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(types))
        for row in rows:
            copy.write_row(row)


def _insert_on_conflict(conn: Connection, new: list[Prediction], now: datetime) -> list[Prediction]:
    inserted: list[Prediction] = []
    stmt = pg_insert(t.predictions).on_conflict_do_nothing().returning(t.predictions.c.prediction_id)
    for p in new:
        row = dict(zip(PREDICTION_COLUMNS, prediction_row(p, now, p.cohort), strict=True))
        if conn.execute(stmt, row).first() is not None:
            inserted.append(p)
    return inserted


def _after_predictions(
    conn: Connection, new: list[Prediction], now: datetime, *, pg: bool
) -> dict[str, list[tuple[datetime, str]]]:
    """Counters, dirty hours, and ground truth that was waiting for these predictions (returned:
    model -> (ts, prediction_id) of the predictions that got their first label)."""
    counts: dict[tuple[str, str], list[Any]] = {}
    for p in new:
        c = counts.get((p.model, p.model_version))
        if c is None:
            counts[(p.model, p.model_version)] = [1, p.status != 0, p.ts, p.ts]
        else:
            c[0] += 1
            c[1] += p.status != 0
            c[2] = min(c[2], p.ts)
            c[3] = max(c[3], p.ts)
    bump_versions(
        conn,
        [
            {"model": m, "version": v, "predictions": n, "errors": int(e), "first_seen": lo, "last_seen": hi}
            for (m, v), (n, e, lo, hi) in counts.items()
        ],
        pg=pg,
    )
    mark_dirty(conn, {(p.model, hour_floor(p.ts)) for p in new}, now, pg=pg)
    return _adopt_pending(conn, new, pg=pg)


def _insert(pg: bool, table: sa.Table) -> Any:
    return pg_insert(table) if pg else sqlite_insert(table)


def bump_versions(conn: Connection, rows: list[dict[str, Any]], *, pg: bool) -> None:
    """Add to the per-version counters (rows sorted so concurrent batches lock in one order)."""
    if not rows:
        return
    v = t.model_versions
    stmt = _insert(pg, v)
    stmt = stmt.on_conflict_do_update(
        index_elements=[v.c.model, v.c.version],
        set_={
            "predictions": v.c.predictions + stmt.excluded.predictions,
            "errors": v.c.errors + stmt.excluded.errors,
            "first_seen": sa.case((stmt.excluded.first_seen < v.c.first_seen, stmt.excluded.first_seen), else_=v.c.first_seen),
            "last_seen": sa.case((stmt.excluded.last_seen > v.c.last_seen, stmt.excluded.last_seen), else_=v.c.last_seen),
        },
    )
    conn.execute(stmt, sorted(rows, key=lambda r: (r["model"], r["version"])))


#: ``dirty_hours.marked_at`` of an hour whose state is current but whose windows are not refreshed
#: yet (monitor.server.jobs.evaluate). Writers mark hours with the time of the write, never this.
WINDOWS_PENDING = datetime(1970, 1, 1, tzinfo=UTC)


def mark_dirty(conn: Connection, hours: set[tuple[str, datetime]], now: datetime, *, pg: bool) -> None:
    """Mark hours as changed. Every mark of an hour is later than the one before (by a microsecond
    when the clocks agree), so the evaluate job can consume exactly the mark it saw by its value,
    outside its snapshot, and a write it did not see leaves the hour marked."""
    if not hours:
        return
    d = t.dirty_hours
    stmt = _insert(pg, d)
    # timestamptz on PostgreSQL, integer microseconds on SQLite
    later: sa.ColumnClause[datetime] = sa.literal_column(
        "dirty_hours.marked_at + " + ("interval '1 microsecond'" if pg else "1")
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[d.c.model, d.c.hour_start],
        set_={"marked_at": sa.case((stmt.excluded.marked_at > d.c.marked_at, stmt.excluded.marked_at), else_=later)},
    )
    conn.execute(stmt, [{"model": m, "hour_start": h, "marked_at": now} for m, h in sorted(hours)])


# --------------------------------------------------------------------------------------------
# ground truth

_GT_VALUES = ("labelled_at", "received_at", "label", "boxes", "box_classes", "iscrowd")


def _gt_values(g: GroundTruth, received_at: datetime) -> dict[str, Any]:
    return {
        "labelled_at": g.labelled_at,
        "received_at": received_at,
        "label": g.label,
        "boxes": pack(g.boxes, "<f4"),
        "box_classes": pack(g.box_classes, "<i4"),
        "iscrowd": pack(g.iscrowd, "u1"),
    }


def _same_label(stored: Any, values: dict[str, Any]) -> bool:
    return all(getattr(stored, k) == values[k] for k in ("label", "boxes", "box_classes", "iscrowd"))


def write_ground_truth(engine: Engine, gts: Sequence[GroundTruth], *, now: datetime, slos: Sequence[SLO] = ()) -> WriteResult:
    """Store ground-truth revisions; the newest ``labelled_at`` per prediction wins. First labels
    are counted as events of the quality SLOs among ``slos`` in the same transaction."""
    with write_transaction(engine) as conn:
        return store_ground_truth(conn, gts, now=now, slos=slos)


def store_ground_truth(conn: Connection, gts: Sequence[GroundTruth], *, now: datetime, slos: Sequence[SLO] = ()) -> WriteResult:
    """:func:`write_ground_truth` in the caller's transaction."""
    pg = conn.dialect.name == "postgresql"
    # Within one batch, apply revisions oldest first so the newest wins here too.
    ordered = sorted(gts, key=lambda g: g.labelled_at)
    accepted = 0
    by_model: dict[str, list[GroundTruth]] = defaultdict(list)
    for g in ordered:
        by_model[g.model].append(g)
    for model, group in by_model.items():
        accepted += _write_model_ground_truth(conn, model, group, now, pg=pg, slos=slos)
    return WriteResult(accepted, len(gts) - accepted)


def _write_model_ground_truth(
    conn: Connection, model: str, group: list[GroundTruth], now: datetime, *, pg: bool, slos: Sequence[SLO] = ()
) -> int:
    ids = sorted({g.prediction_id for g in group})
    p, gt, pend = t.predictions.c, t.ground_truth.c, t.ground_truth_pending.c
    preds = {r.prediction_id: r for r in conn.execute(
        sa.select(p.prediction_id, p.ts, p.model_version).where(p.model == model, _in(p.prediction_id, ids, pg))
    )}  # fmt: skip
    stored_gt: dict[str, Any] = {}
    if preds:  # labels of known predictions, looked up by their full key (prediction time first)
        keys = [(r.ts, pid) for pid, r in preds.items()]
        query = sa.select(gt.prediction_id, *(gt[c] for c in _GT_VALUES))
        stored_gt = {r.prediction_id: r for r in conn.execute(by_keys(conn, query, t.ground_truth, gt.prediction_ts, model, keys))}
    stored_pending = {r.prediction_id: r for r in conn.execute(
        sa.select(pend.prediction_id, *(pend[c] for c in _GT_VALUES)).where(pend.model == model, _in(pend.prediction_id, ids, pg))
    )}  # fmt: skip
    current: dict[str, Any] = {**stored_pending, **stored_gt}
    matched: dict[str, dict[str, Any]] = {}
    pending: dict[str, dict[str, Any]] = {}
    first_revisions = accepted = 0
    for g in group:
        values = _gt_values(g, now)
        stored = current.get(g.prediction_id)
        if stored is not None and (g.labelled_at < stored.labelled_at or _same_label(stored, values)):
            continue  # a retry, or a revision older than the one we hold
        first_revisions += stored is None
        accepted += 1
        current[g.prediction_id] = _Row(values)
        target = matched if g.prediction_id in preds else pending
        target[g.prediction_id] = {"model": model, "prediction_id": g.prediction_id, **values}
    if matched:
        upsert_ground_truth(conn, [{**row, "prediction_ts": preds[pid].ts} for pid, row in matched.items()], pg=pg)
        # A changed label invalidates its evaluated hour; a first label is merged in as an increment.
        revised = {pid for pid in matched if pid in stored_gt}
        mark_dirty(conn, {(model, hour_floor(preds[pid].ts)) for pid in revised}, now, pg=pg)
        first = [preds[pid] for pid in matched if pid not in stored_gt]
        log_first_labels(conn, model, [(r.ts, r.prediction_id) for r in first], now, pg=pg)
        _count_labelled(conn, model, [r.model_version for r in first])
        slo_events.count_labels(conn, slos, model, [(r.ts, r.prediction_id) for r in first], now, pg=pg)
        adopted = [pid for pid in matched if pid in stored_pending]
        if adopted:
            conn.execute(sa.delete(t.ground_truth_pending).where(pend.model == model, _in(pend.prediction_id, adopted, pg)))
    if pending:
        _upsert_newest(conn, t.ground_truth_pending, ["model", "prediction_id"], list(pending.values()), pg=pg)
    if first_revisions:
        conn.execute(sa.update(t.models).where(t.models.c.model == model).values(ground_truth=t.models.c.ground_truth + first_revisions))
    return accepted


def log_first_labels(conn: Connection, model: str, keys: list[tuple[datetime, str]], now: datetime, *, pg: bool) -> None:
    """Record predictions (time, id) that just got their first label, for the evaluate job.

    A label of an hour already evaluated is logged as an increment, which the job merges into the
    hour's states. A label of an hour waiting to be recomputed (marked dirty) moves the hour's
    mark instead: the recompute reads it with the hour's rows, and a recompute whose snapshot
    missed it finds its mark moved and leaves the hour dirty, as for a new prediction. Logging
    those too wrote a row per label that the recompute deleted unread (the labels of a backfill,
    or of the current hour), and the index entries they left slowed every read of the increments
    until a VACUUM (600 000 after loading bench/pipeline.py: 0.15 s a run).
    """
    if not keys:
        return
    d = t.dirty_hours.c
    hours = sorted({hour_floor(ts) for ts, _ in keys})
    waiting = set(conn.execute(
        sa.select(d.hour_start).where(d.model == model, d.hour_start.in_(hours), d.marked_at != WINDOWS_PENDING)
    ).scalars())  # fmt: skip
    mark_dirty(conn, {(model, hour) for hour in waiting}, now, pg=pg)
    rows = [{"model": model, "prediction_ts": ts, "prediction_id": pid, "logged_at": now}
            for ts, pid in sorted(keys) if hour_floor(ts) not in waiting]  # fmt: skip
    if rows:
        conn.execute(_insert(pg, t.label_increments).on_conflict_do_nothing(), rows)


def _count_labelled(conn: Connection, model: str, versions: list[str]) -> None:
    """Count newly labelled predictions per version (the version rows exist: the predictions do)."""
    v = t.model_versions
    for version, n in sorted(Counter(versions).items()):
        conn.execute(sa.update(v).where(v.c.model == model, v.c.version == version).values(labelled=v.c.labelled + n))


class _Row:
    """A stored-revision stand-in for records applied earlier in the same batch."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _in(column: Any, values: list[str], pg: bool) -> Any:
    if pg:
        return column == sa.any_(sa.bindparam(f"in_{column.name}", values, type_=sa.ARRAY(sa.Text)))
    return column.in_(values)


def upsert_ground_truth(conn: Connection, rows: list[dict[str, Any]], *, pg: bool) -> None:
    _upsert_newest(conn, t.ground_truth, ["model", "prediction_ts", "prediction_id"], rows, pg=pg)


def _upsert_newest(conn: Connection, table: sa.Table, keys: list[str], rows: list[dict[str, Any]], *, pg: bool) -> None:
    """Insert, or replace the stored revision when this one is at least as new (race-safe)."""
    stmt = _insert(pg, table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c: stmt.excluded[c] for c in _GT_VALUES},
        where=stmt.excluded.labelled_at >= table.c.labelled_at,
    )
    conn.execute(stmt, sorted(rows, key=lambda r: r["prediction_id"]))


def _adopt_pending(conn: Connection, new: list[Prediction], *, pg: bool) -> dict[str, list[tuple[datetime, str]]]:
    """Move ground truth that arrived before these predictions into ``ground_truth``; returns
    model -> (ts, prediction_id) of the predictions that got it.

    Runs in the transaction that stores the predictions, which marks their hours dirty, so the
    labels need no increment of their own.
    """
    by_model: dict[str, dict[str, Prediction]] = defaultdict(dict)
    for p in new:
        by_model[p.model][p.prediction_id] = p
    adopted: dict[str, list[tuple[datetime, str]]] = {}
    for model, preds in by_model.items():
        keys = {pid: (p.ts, p.model_version) for pid, p in preds.items()}
        moved = _move_pending(conn, model, keys, pg=pg)
        if moved:
            adopted[model] = [(keys[pid][0], pid) for pid in moved]
    return adopted


def _move_pending(conn: Connection, model: str, keys: dict[str, tuple[datetime, str]], *, pg: bool) -> list[str]:
    """Move waiting ground truth of the given predictions (id -> (ts, version)); returns the ids moved."""
    pend = t.ground_truth_pending
    cond = sa.and_(pend.c.model == model, _in(pend.c.prediction_id, sorted(keys), pg))
    waiting = conn.execute(sa.select(pend).where(cond)).mappings().all()
    if not waiting:
        return []
    conn.execute(sa.delete(pend).where(cond))
    upsert_ground_truth(conn, [{**row, "prediction_ts": keys[row["prediction_id"]][0]} for row in waiting], pg=pg)
    _count_labelled(conn, model, [keys[row["prediction_id"]][1] for row in waiting])
    return [row["prediction_id"] for row in waiting]


def adopt_waiting_ground_truth(engine: Engine, *, now: datetime, slos: Sequence[SLO] = ()) -> int:
    """Join waiting ground truth whose prediction has arrived since (housekeeping).

    The ingest paths join the two whichever arrives second; this closes the one gap, a label and
    its prediction committed by concurrent transactions that could not see each other.
    """
    pg = engine.dialect.name == "postgresql"
    p, pend = t.predictions.c, t.ground_truth_pending.c
    moved = 0
    with write_transaction(engine) as conn:
        found = conn.execute(
            sa.select(pend.model, pend.prediction_id, p.ts, p.model_version)
            .select_from(t.ground_truth_pending.join(t.predictions, sa.and_(p.model == pend.model, p.prediction_id == pend.prediction_id)))
        ).all()
        by_model: dict[str, dict[str, tuple[datetime, str]]] = defaultdict(dict)
        for model, pid, ts, version in found:
            by_model[model][pid] = (ts, version)
        for model, keys in by_model.items():
            ids = _move_pending(conn, model, keys, pg=pg)
            # their hours may have been evaluated already: merge the labels in as increments
            log_first_labels(conn, model, [(keys[pid][0], pid) for pid in ids], now, pg=pg)
            slo_events.count_labels(conn, slos, model, [(keys[pid][0], pid) for pid in ids], now, pg=pg)
            moved += len(ids)
    return moved
