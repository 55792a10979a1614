"""Reading stored predictions with their newest ground truth, as numpy columns.

Used by the evaluation jobs: an hour of one model (``read_hour``) or a set of predictions by key
(``read_keys``, for labels that arrived after their hour was evaluated). Packed arrays stay
``bytes`` here; the jobs decode them with ``numpy.frombuffer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy import Connection

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

    def __len__(self) -> int:
        return len(self.prediction_id)


def _query(task: str) -> sa.Select[Any]:
    p, g = t.predictions.c, t.ground_truth.c
    columns: list[Any] = [p.prediction_id, p.model_version, p.cohort, p.ts, p.status, p.latency_ms, g.labelled_at]
    if task == "classification":
        columns += [p.predicted_class, p.confidence, p.probabilities, g.label]
    else:
        columns += [p.boxes, p.box_classes, p.box_scores, g.boxes.label("gt_boxes"), g.box_classes.label("gt_classes"), g.iscrowd]
    return sa.select(*columns)


def _join(lo: datetime, hi: datetime) -> Any:
    p, g = t.predictions, t.ground_truth
    # the time bounds on both sides let PostgreSQL prune both tables to the same day partition
    return p.outerjoin(
        g,
        sa.and_(
            g.c.model == p.c.model, g.c.prediction_id == p.c.prediction_id, g.c.prediction_ts == p.c.ts,
            g.c.prediction_ts >= lo, g.c.prediction_ts < hi,
        ),
    )  # fmt: skip


def read_hour(conn: Connection, model: str, task: str, hour_start: datetime) -> Rows:
    """Every prediction of ``model`` in ``[hour_start, hour_start + 1h)`` with its ground truth."""
    end = hour_start + _HOUR
    p = t.predictions.c
    query = _query(task).select_from(_join(hour_start, end)).where(p.model == model, p.ts >= hour_start, p.ts < end)
    return _rows(conn.execute(query).all(), task)


def read_keys(conn: Connection, model: str, task: str, keys: Sequence[tuple[datetime, str]]) -> Rows:
    """The predictions ``(ts, prediction_id)`` of ``model`` with their ground truth."""
    if not keys:
        return _rows([], task)
    lo = min(k[0] for k in keys)
    hi = max(k[0] for k in keys) + timedelta(microseconds=1)
    p = t.predictions.c
    wanted = {pid for _, pid in keys}
    query = _query(task).select_from(_join(lo, hi)).where(p.model == model, p.ts >= lo, p.ts < hi)
    if conn.dialect.name == "postgresql":
        query = query.where(p.prediction_id == sa.any_(sa.bindparam("ids", sorted(wanted), type_=sa.ARRAY(sa.Text))))
    else:
        query = query.where(p.prediction_id.in_(sorted(wanted)))
    exact = set(keys)
    rows = [r for r in conn.execute(query).all() if (r.ts, r.prediction_id) in exact]
    return _rows(rows, task)


def _seconds(values: Sequence[datetime | None]) -> NDArray[np.float64]:
    return np.array([np.nan if v is None else v.timestamp() for v in values], dtype=np.float64)


def _rows(rows: Sequence[Any], task: str) -> Rows:
    n = len(rows)
    cols = list(zip(*rows, strict=True)) if n else [[] for _ in range(13)]
    pid, version, cohort, ts, status, latency, labelled_at = cols[:7]
    labelled = np.array([v is not None for v in labelled_at], dtype=bool)
    empty: list[bytes | None] = [None] * n
    common = {
        "prediction_id": list(pid),
        "version": list(version),
        "cohort": list(cohort),
        "ts": _seconds(ts),
        "status": np.array(status, dtype=np.int8),
        "latency_ms": np.array([np.nan if v is None else v for v in latency], dtype=np.float64),
        "labelled": labelled,
        "labelled_at": _seconds(labelled_at),
    }
    if task == "classification":
        predicted, confidence, probabilities, label = cols[7:11]
        return Rows(
            **common,
            predicted_class=np.array([-1 if v is None else v for v in predicted], dtype=np.int64),
            confidence=np.array([np.nan if v is None else v for v in confidence], dtype=np.float64),
            probabilities=list(probabilities),
            label=np.array([-1 if v is None else v for v in label], dtype=np.int64),
            boxes=empty, box_classes=empty, box_scores=empty, gt_boxes=empty, gt_classes=empty, gt_crowd=empty,
        )  # fmt: skip
    boxes, box_classes, box_scores, gt_boxes, gt_classes, gt_crowd = cols[7:13]
    return Rows(
        **common,
        predicted_class=np.full(n, -1, dtype=np.int64),
        confidence=np.full(n, np.nan),
        probabilities=empty,
        label=np.full(n, -1, dtype=np.int64),
        boxes=list(boxes), box_classes=list(box_classes), box_scores=list(box_scores),
        gt_boxes=list(gt_boxes), gt_classes=list(gt_classes), gt_crowd=list(gt_crowd),
    )  # fmt: skip
