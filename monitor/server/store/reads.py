"""Reading stored predictions with their newest ground truth, as numpy columns.

Used by the evaluation jobs: an hour of one model (``read_hour``), the predictions whose labels
arrived after their hour was evaluated (``take_increments``) or a set of predictions by key
(``read_keys``). The first two also read the annotations of classification predictions
(``read_annotations``), which annotator agreement is computed from. Packed arrays stay
``bytes`` here; the jobs decode them with ``numpy.frombuffer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypedDict

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import ARRAY

from monitor.server.store import tables as t

_HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Rows:
    """Predictions (one entry per prediction) joined with their newest ground truth."""

    prediction_id: list[str]
    version: list[str]
    cohort: list[dict[str, Any] | None]
    ts: NDArray[np.float64]  # Unix seconds
    status: NDArray[np.int8]
    latency_ms: NDArray[np.float64]  # NaN when not reported
    device: list[str | None]  # the resources of the inference call (None, 0: not reported)
    batch_size: NDArray[np.int64]
    labelled: NDArray[np.bool_]
    labelled_at: NDArray[np.float64]  # Unix seconds, NaN when unlabelled
    # classification
    predicted_class: NDArray[np.int64]  # -1 when absent
    confidence: NDArray[np.float64]  # NaN when absent
    probabilities: list[bytes | None]
    label: NDArray[np.int64]  # -1 when unlabelled
    # detection
    boxes: list[bytes | None]
    box_classes: list[bytes | None]
    box_scores: list[bytes | None]
    gt_boxes: list[bytes | None]
    gt_classes: list[bytes | None]
    gt_crowd: list[bytes | None]
    #: every annotator's current label of each prediction (classification; see
    #: :func:`read_annotations`); None when they were not read
    annotations: list[tuple[Annotated, ...]] | None = None

    def __len__(self) -> int:
        return len(self.prediction_id)

    def take(self, indices: Sequence[int]) -> Rows:
        """The rows at ``indices``, in that order."""
        idx = np.asarray(indices, dtype=np.intp)
        picked: dict[str, Any] = {}  # one column per field, each of its own type
        for f in fields(self):
            column = getattr(self, f.name)
            if column is None:
                picked[f.name] = None
            else:
                picked[f.name] = column[idx] if isinstance(column, np.ndarray) else [column[i] for i in idx]
        return Rows(**picked)


_PREDICTION_COLUMNS = {
    "classification": ("predicted_class", "confidence", "probabilities"),
    "detection": ("boxes", "box_classes", "box_scores"),
}
_LABEL_COLUMNS = {"classification": ("label",), "detection": ("boxes", "box_classes", "iscrowd")}


def _predictions(task: str) -> sa.Select[Any]:
    p = t.predictions.c
    return sa.select(p.prediction_id, p.model_version, p.cohort, p.ts, p.status, p.latency_ms, p.device, p.batch_size,
                     *(p[c] for c in _PREDICTION_COLUMNS[task]))  # fmt: skip


def _labels(task: str) -> sa.Select[Any]:
    g = t.ground_truth.c
    return sa.select(g.prediction_id, g.labelled_at, *(g[c] for c in _LABEL_COLUMNS[task]))


def fetch_binary(conn: Connection, query: sa.Select[Any]) -> list[Any]:
    """Rows of ``query`` (attribute access by column name). On PostgreSQL the result comes in the
    binary protocol: states are large ``bytea`` values, which the text protocol would send as twice
    as many hex digits that both ends convert.
    The query's columns must need no SQLAlchemy result processing (for timestamps, text, numbers,
    JSON and bytes psycopg returns what SQLAlchemy would)."""
    if conn.dialect.name != "postgresql":
        return list(conn.execute(query).all())
    from psycopg.rows import namedtuple_row

    compiled = query.compile(dialect=conn.dialect, compile_kwargs={"render_postcompile": True})
    raw = conn.connection.driver_connection
    with raw.cursor(binary=True, row_factory=namedtuple_row) as cur:  # type: ignore[union-attr]
        return cur.execute(str(compiled), compiled.params).fetchall()


def read_hour(conn: Connection, model: str, task: str, hour_start: datetime) -> Rows:
    """Every prediction of ``model`` in ``[hour_start, hour_start + 1h)`` with its ground truth.

    Two index range scans joined here by prediction id, rather than a SQL join: the join's plan
    depends on table statistics, which freshly filled partitions lack, and one bad plan rescans
    the hour's labels for every prediction.
    """
    end = hour_start + _HOUR
    p, g = t.predictions.c, t.ground_truth.c
    preds = conn.execute(_predictions(task).where(p.model == model, p.ts >= hour_start, p.ts < end)).all()
    labels = conn.execute(_labels(task).where(g.model == model, g.prediction_ts >= hour_start, g.prediction_ts < end)).all()
    return _rows(preds, {r.prediction_id: r for r in labels}, task, _annotations_of(conn, model, task, preds))


def read_keys(conn: Connection, model: str, task: str, keys: Sequence[tuple[datetime, str]]) -> Rows:
    """The predictions ``(ts, prediction_id)`` of ``model`` with their ground truth."""
    p, g = t.predictions, t.ground_truth
    preds: list[Any] = []
    labels: dict[str, Any] = {}
    for start in range(0, len(keys), _KEYS_PER_QUERY):
        chunk = list(keys[start : start + _KEYS_PER_QUERY])
        preds += conn.execute(by_keys(conn, _predictions(task), p, p.c.ts, model, chunk)).all()
        labels.update(
            (r.prediction_id, r) for r in conn.execute(by_keys(conn, _labels(task), g, g.c.prediction_ts, model, chunk))
        )
    return _rows(preds, labels, task)


def take_increments(conn: Connection, model: str, task: str, limit: int) -> Rows:
    """The predictions of ``model``'s first ``limit`` label increments, in (time, id) order, with
    their ground truth; the increments are deleted in the caller's transaction.

    Call it inside one snapshot (REPEATABLE READ): the DELETE takes exactly the increments read,
    so one committed meanwhile stays for the next run. The keys stay in the database rather than
    travelling as array parameters (psycopg's datetime dumper is slow for tens of thousands). On
    PostgreSQL one statement deletes the increments and probes their predictions and labels with
    the keys it returns: the index of ``label_increments`` holds the entries of every increment
    merged before, dead until VACUUM, and every statement that reads it walks them.
    """
    inc = t.label_increments.c
    first = sa.select(inc.prediction_ts, inc.prediction_id).where(inc.model == model).order_by(inc.prediction_ts, inc.prediction_id).limit(limit)
    p, g = t.predictions, t.ground_truth
    if conn.dialect.name == "postgresql":
        # by row address: one scan of the index finds them, the DELETE does not search again
        ctid: sa.ColumnClause[Any] = sa.literal_column("ctid")
        taken = (
            sa.delete(t.label_increments)
            .where(ctid.in_(first.with_only_columns(ctid)))
            .returning(inc.prediction_id.label("pid"), inc.prediction_ts.label("ts"))
            .cte("taken")
        )
        pred = _predictions(task).where(p.c.model == model, p.c.prediction_id == taken.c.pid, p.c.ts == taken.c.ts).limit(1).lateral("p")
        label = (
            sa.select(*(c.label(f"gt_{c.name}") for c in _labels(task).selected_columns))
            .where(g.c.model == model, g.c.prediction_id == taken.c.pid, g.c.prediction_ts == taken.c.ts)
            .limit(1)
            .lateral("g")
        )
        query = (
            sa.select(*pred.c, *label.c).select_from(taken).join(pred, sa.true()).outerjoin(label, sa.true())
            .order_by(taken.c.ts, taken.c.pid.collate("C"))  # code-point order, as Python sorts
        )  # fmt: skip
        found = fetch_binary(conn, query)
        labels: dict[str, Any] = {
            r.prediction_id: _Label._make(getattr(r, f"gt_{f}", None) for f in _Label._fields) for r in found if r.gt_prediction_id
        }
        return _rows(found, labels, task, _annotations_of(conn, model, task, found))
    wanted = first.subquery("wanted")
    keys = sa.select(wanted.c.prediction_ts.label("ts"), wanted.c.prediction_id.label("pid")).subquery("keys")
    last = conn.execute(sa.select(keys.c.ts, keys.c.pid).order_by(keys.c.ts.desc(), keys.c.pid.desc()).limit(1)).first()
    if last is None:
        return _rows([], {}, task)
    preds = conn.execute(by_keys(conn, _predictions(task), p, p.c.ts, model, keys)).all()
    labels = {r.prediction_id: r for r in conn.execute(by_keys(conn, _labels(task), g, g.c.prediction_ts, model, keys))}
    # the increments read above, by their order (this snapshot too)
    up_to = sa.tuple_(sa.literal(last.ts, inc.prediction_ts.type), sa.literal(last.pid, inc.prediction_id.type))
    conn.execute(sa.delete(t.label_increments).where(inc.model == model, sa.tuple_(inc.prediction_ts, inc.prediction_id) <= up_to))
    return _rows(preds, labels, task, _annotations_of(conn, model, task, preds))


class Annotated(NamedTuple):
    """One annotator's current label of a prediction (a row of ``label_annotations``)."""

    annotator: str
    label: int
    audit: bool


def annotation_rows(conn: Connection, model: str, ids: Sequence[str]) -> list[Any]:
    """Every stored annotation of the predictions ``ids`` of ``model``: rows of (prediction_id,
    annotator, label, audit, labelled_at)."""
    a = t.label_annotations.c
    query = sa.select(a.prediction_id, a.annotator, a.label, a.audit, a.labelled_at).where(a.model == model)
    rows: list[Any] = []
    if conn.dialect.name == "postgresql":
        if ids:
            # one primary-key probe per id (the ids one array parameter): with ``= ANY(ids)`` or an
            # ``IN`` list, a table without statistics yet is read through the (model, received_at)
            # index, every annotation of the model tested against every id: an evaluated hour, or
            # a ground-truth batch, then costs as much as the model's whole annotation history.
            # OFFSET 0 keeps the planner from flattening the probe into a join of its choosing.
            wanted = sa.bindparam("annotated_ids", list(ids), type_=ARRAY(sa.Text))
            keys = sa.func.unnest(wanted).table_valued("pid").render_derived()
            probe = query.where(a.prediction_id == keys.c.pid).offset(0).lateral("probe")
            rows = list(conn.execute(sa.select(*probe.c).select_from(keys).join(probe, sa.true())).all())
    else:
        for start in range(0, len(ids), _KEYS_PER_QUERY):
            rows += conn.execute(query.where(a.prediction_id.in_(list(ids[start : start + _KEYS_PER_QUERY])))).all()
    return rows


def read_annotations(conn: Connection, model: str, ids: Sequence[str]) -> dict[str, tuple[Annotated, ...]]:
    """The annotations of the predictions ``ids`` of ``model``, by prediction (those without
    none), in annotator order.

    An item has one reference: of several audits of a prediction only the newest is kept (ties
    broken by the greater annotator name, as the label policies break them); the older ones
    are superseded references, neither audits nor peer labels.
    """
    rows = annotation_rows(conn, model, ids)
    by_item: dict[str, list[Any]] = {}
    for r in rows:
        by_item.setdefault(r.prediction_id, []).append(r)
    out: dict[str, tuple[Annotated, ...]] = {}
    for pid, found in by_item.items():
        audits = [r for r in found if r.audit]
        reference = max(audits, key=lambda r: (r.labelled_at, r.annotator)) if audits else None
        out[pid] = tuple(
            Annotated(r.annotator, r.label, r.audit)
            for r in sorted(found, key=lambda r: r.annotator)
            if not r.audit or r is reference
        )
    return out


def _annotations_of(conn: Connection, model: str, task: str, preds: Sequence[Any]) -> dict[str, tuple[Annotated, ...]] | None:
    """The annotations of ``preds`` for a classification model; None for detection (its labels
    are not annotations)."""
    if task != "classification":
        return None
    return read_annotations(conn, model, [r.prediction_id for r in preds])


class _Label(NamedTuple):
    """A label's columns, as :func:`_rows` reads them (those of the other task are None)."""

    prediction_id: str
    labelled_at: datetime
    label: int | None
    boxes: bytes | None
    box_classes: bytes | None
    iscrowd: bytes | None


def by_keys(
    conn: Connection,
    query: sa.Select[Any],
    table: sa.Table,
    ts: Any,
    model: str,
    keys: list[tuple[datetime, str]] | sa.Subquery,
) -> sa.Select[Any]:
    """``query`` restricted to the rows of ``model`` with these (time, prediction id) keys: a list,
    or a subquery with columns ``pid`` and ``ts``.

    On PostgreSQL one primary-key probe per key, with run-time pruning to the key's partition: the
    keys (two unnested array parameters, or the subquery) drive ``query`` as a ``LATERAL``
    subquery per key. ``LIMIT 1``
    (a key is unique) keeps the planner from flattening it into a plain join, whose plan follows
    the partitions' statistics: a ground-truth partition filled since its last ANALYZE looks
    empty, and such a join sorts all of its rows for every batch of keys. A row-value ``IN`` list
    plans as a large OR, tested on every row. SQLite takes the row-value ``IN``.
    """
    if conn.dialect.name == "postgresql":
        wanted = keys if isinstance(keys, sa.Subquery) else _key_table(keys)
        probe = (
            query.where(table.c.model == model, table.c.prediction_id == wanted.c.pid, ts == wanted.c.ts)
            .limit(1)
            .lateral("probe")
        )
        return sa.select(*probe.c).select_from(wanted).join(probe, sa.true())
    listed = sa.select(keys.c.ts, keys.c.pid) if isinstance(keys, sa.Subquery) else keys
    return query.where(table.c.model == model, sa.tuple_(ts, table.c.prediction_id).in_(listed))


def _key_table(keys: Sequence[tuple[datetime, str]]) -> Any:
    """PostgreSQL: the (time, prediction id) keys as a table ``(pid, ts)``, two array parameters
    unnested (one parameter each however many keys)."""
    return (
        sa.func.unnest(
            sa.bindparam("key_ids", [pid for _, pid in keys], type_=ARRAY(sa.Text)),
            sa.bindparam("key_ts", [ts for ts, _ in keys], type_=ARRAY(sa.DateTime(timezone=True))),
        )
        .table_valued("pid", "ts")
        .render_derived()
    )


#: Keys per lookup query: large enough to amortise round trips, small enough for the planner.
_KEYS_PER_QUERY = 2000


def _seconds(values: Sequence[datetime | None]) -> NDArray[np.float64]:
    return np.array([np.nan if v is None else v.timestamp() for v in values], dtype=np.float64)


class _CommonColumns(TypedDict):
    """The :class:`Rows` columns shared by every task."""

    prediction_id: list[str]
    version: list[str]
    cohort: list[dict[str, Any] | None]
    ts: NDArray[np.float64]
    status: NDArray[np.int8]
    latency_ms: NDArray[np.float64]
    device: list[str | None]
    batch_size: NDArray[np.int64]
    labelled: NDArray[np.bool_]
    labelled_at: NDArray[np.float64]
    annotations: list[tuple[Annotated, ...]] | None


def _rows(preds: Sequence[Any], labels: dict[str, Any], task: str, annotations: dict[str, tuple[Annotated, ...]] | None = None) -> Rows:
    n = len(preds)
    got = [labels.get(r.prediction_id) for r in preds]
    empty: list[bytes | None] = [None] * n
    common: _CommonColumns = {
        "prediction_id": [r.prediction_id for r in preds],
        "version": [r.model_version for r in preds],
        "cohort": [r.cohort for r in preds],
        "ts": _seconds([r.ts for r in preds]),
        "status": np.array([r.status for r in preds], dtype=np.int8),
        "latency_ms": np.array([np.nan if r.latency_ms is None else r.latency_ms for r in preds], dtype=np.float64),
        "device": [r.device for r in preds],
        "batch_size": np.array([r.batch_size or 0 for r in preds], dtype=np.int64),
        "labelled": np.array([g is not None for g in got], dtype=bool),
        "labelled_at": _seconds([None if g is None else g.labelled_at for g in got]),
        "annotations": None if annotations is None else [annotations.get(r.prediction_id, ()) for r in preds],
    }
    if task == "classification":
        return Rows(
            **common,
            predicted_class=np.array([-1 if r.predicted_class is None else r.predicted_class for r in preds], dtype=np.int64),
            confidence=np.array([np.nan if r.confidence is None else r.confidence for r in preds], dtype=np.float64),
            probabilities=[r.probabilities for r in preds],
            label=np.array([-1 if g is None or g.label is None else g.label for g in got], dtype=np.int64),
            boxes=empty, box_classes=empty, box_scores=empty, gt_boxes=empty, gt_classes=empty, gt_crowd=empty,
        )  # fmt: skip
    return Rows(
        **common,
        predicted_class=np.full(n, -1, dtype=np.int64),
        confidence=np.full(n, np.nan),
        probabilities=empty,
        label=np.full(n, -1, dtype=np.int64),
        boxes=[r.boxes for r in preds], box_classes=[r.box_classes for r in preds], box_scores=[r.box_scores for r in preds],
        gt_boxes=[None if g is None else g.boxes for g in got],
        gt_classes=[None if g is None else g.box_classes for g in got],
        gt_crowd=[None if g is None else g.iscrowd for g in got],
    )  # fmt: skip
