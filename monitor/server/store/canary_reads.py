"""One model version's traffic since a time, as numpy columns, for the canary comparison.

The first ``limit`` predictions from ``since`` (by prediction time) are read with their newest
ground truth: a prefix, so the evidence of a comparison only grows from one poll to the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy import Connection

from monitor.server.store import tables as t
from monitor.wire import STATUS_OK


@dataclass(frozen=True)
class VersionTraffic:
    """Predictions of one version (one entry each) with their labels."""

    prediction_id: list[str]
    ts: list[datetime]
    ok: NDArray[np.bool_]
    latency_ms: NDArray[np.float64]  # NaN when not reported
    input_hash: list[str | None]
    # classification
    predicted_class: NDArray[np.int64]  # -1 when absent
    confidence: NDArray[np.float64]  # NaN when absent
    label: NDArray[np.int64]  # -1 when unlabelled
    # detection: packed arrays, None when absent / unlabelled
    boxes: list[bytes | None]
    box_classes: list[bytes | None]
    box_scores: list[bytes | None]
    labelled: NDArray[np.bool_]
    gt_boxes: list[bytes | None]
    gt_classes: list[bytes | None]
    gt_crowd: list[bytes | None]

    def __len__(self) -> int:
        return len(self.prediction_id)


def read_version_traffic(
    conn: Connection, model: str, version: str, task: str, since: datetime, until: datetime, *, limit: int
) -> VersionTraffic:
    """Predictions of ``model`` ``version`` in ``[since, until)``, the first ``limit`` by time."""
    p, g = t.predictions.c, t.ground_truth.c
    detection = task == "detection"
    columns = [p.prediction_id, p.ts, p.status, p.latency_ms, p.input_hash, p.predicted_class, p.confidence]
    if detection:
        columns += [p.boxes, p.box_classes, p.box_scores]
    rows = conn.execute(
        sa.select(*columns)
        .where(p.model == model, p.model_version == version, p.ts >= since, p.ts < until)
        .order_by(p.ts, p.prediction_id)
        .limit(limit)
    ).all()
    labels: dict[str, Any] = {}
    if rows:
        last = rows[-1].ts
        label_cols = [g.prediction_id, g.label] + ([g.boxes, g.box_classes, g.iscrowd] if detection else [])
        ids = {r.prediction_id for r in rows}
        for r in conn.execute(
            sa.select(*label_cols).where(g.model == model, g.prediction_ts >= since, g.prediction_ts <= last)
        ):
            if r.prediction_id in ids:
                labels[r.prediction_id] = r
    found = [labels.get(r.prediction_id) for r in rows]
    none: list[Any] = [None] * len(rows)
    return VersionTraffic(
        prediction_id=[r.prediction_id for r in rows],
        ts=[r.ts for r in rows],
        ok=np.array([r.status == STATUS_OK for r in rows], dtype=bool),
        latency_ms=np.array([np.nan if r.latency_ms is None else r.latency_ms for r in rows], dtype=np.float64),
        input_hash=[r.input_hash for r in rows],
        predicted_class=np.array([-1 if r.predicted_class is None else r.predicted_class for r in rows], dtype=np.int64),
        confidence=np.array([np.nan if r.confidence is None else r.confidence for r in rows], dtype=np.float64),
        label=np.array([-1 if f is None or f.label is None else f.label for f in found], dtype=np.int64),
        boxes=[r.boxes for r in rows] if detection else none,
        box_classes=[r.box_classes for r in rows] if detection else none,
        box_scores=[r.box_scores for r in rows] if detection else none,
        labelled=np.array([f is not None for f in found], dtype=bool),
        gt_boxes=[None if f is None else f.boxes for f in found] if detection else none,
        gt_classes=[None if f is None else f.box_classes for f in found] if detection else none,
        gt_crowd=[None if f is None else f.iscrowd for f in found] if detection else none,
    )


def version_first_seen(conn: Connection, model: str, version: str) -> datetime | None:
    """When ``version`` of ``model`` first sent a prediction (None: never)."""
    mv = t.model_versions.c
    return conn.execute(sa.select(mv.first_seen).where(mv.model == model, mv.version == version)).scalar()
