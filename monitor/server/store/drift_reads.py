"""Reading predictions for the drift job: a time range, or a version's first predictions, as
:class:`Record` lists with their embeddings (and, for references, their newest ground truth).

Like :mod:`.reads`, each table is read with an index range scan and joined here by prediction id:
predictions (``model, ts``), embeddings and ground truth (primary keys starting with the model and
the time). Only predictions with status ok are read: a failed inference has no outputs to drift.
Packed arrays stay ``bytes``; :mod:`monitor.server.services.drift_features` decodes the few it keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t
from monitor.wire import STATUS_OK


@dataclass(frozen=True, slots=True)
class Record:
    """One stored prediction with what the drift features and the label-free estimate need."""

    prediction_id: str
    version: str
    ts: datetime
    cohort: dict[str, Any] | None
    predicted_class: int | None = None
    confidence: float | None = None
    probabilities: bytes | None = None
    boxes: bytes | None = None
    box_classes: bytes | None = None
    box_scores: bytes | None = None
    #: 2 (float16) or 4 (float32) bytes per value; 0 without an embedding
    embedding_dtype: int = 0
    embedding: bytes | None = None
    labelled: bool = False
    label: int | None = None
    gt_boxes: bytes | None = None
    gt_classes: bytes | None = None
    gt_crowd: bytes | None = None


_OUTPUTS = {
    "classification": ("predicted_class", "confidence", "probabilities"),
    "detection": ("boxes", "box_classes", "box_scores"),
}
_LABELS = {"classification": ("label",), "detection": ("boxes", "box_classes", "iscrowd")}
#: The :class:`Record` fields the ground-truth columns go into.
_LABEL_FIELDS = {"classification": ("label",), "detection": ("gt_boxes", "gt_classes", "gt_crowd")}


def _select(task: str, probabilities: bool) -> sa.Select[Any]:
    p = t.predictions.c
    # probabilities are the bulk of a classifier's row: NULL unless the estimate needs them
    outputs = [p[c] if probabilities or c != "probabilities" else sa.null().label(c) for c in _OUTPUTS[task]]
    return sa.select(p.prediction_id, p.model_version, p.ts, p.cohort, *outputs)


def read_range(
    conn: Connection,
    model: str,
    task: str,
    start: datetime,
    end: datetime,
    *,
    version: str | None = None,
    embeddings: bool,
    probabilities: bool,
    labels: bool = False,
) -> list[Record]:
    """Predictions of ``model`` (of ``version`` when given) in ``[start, end)``.

    ``embeddings``, ``probabilities`` and ``labels`` say which of the heavy columns to read, so a
    run that scores no embedding detector never reads the embeddings table.
    """
    p = t.predictions.c
    where = [p.model == model, p.ts >= start, p.ts < end, p.status == STATUS_OK]
    if version is not None:
        where.append(p.model_version == version)
    rows = conn.execute(_select(task, probabilities).where(*where)).all()
    return _records(conn, model, task, rows, start, end, version=version, embeddings=embeddings, labels=labels)


def read_first(
    conn: Connection,
    model: str,
    task: str,
    version: str,
    n: int,
    *,
    since: datetime,
    embeddings: bool,
    probabilities: bool,
    labels: bool = False,
) -> list[Record]:
    """The first ``n`` predictions of ``version`` by time (then id), from ``since`` (the version's
    first sighting, so the scan starts where the version does); fewer when fewer exist."""
    p = t.predictions.c
    rows = conn.execute(
        _select(task, probabilities)
        .where(p.model == model, p.ts >= since, p.model_version == version, p.status == STATUS_OK)
        .order_by(p.ts, p.prediction_id)
        .limit(n)
    ).all()
    if not rows:
        return []
    # the span of these rows, end inclusive: the companion tables are read over it
    return _records(conn, model, task, rows, rows[0].ts, rows[-1].ts, version=version, embeddings=embeddings,
                    labels=labels, end_inclusive=True)  # fmt: skip


def count_labels(conn: Connection, model: str, start: datetime, end: datetime) -> int:
    """Ground-truth records of predictions made in ``[start, end]`` (every version): a cheap upper
    bound on the labelled predictions of a reference, checked before reading it."""
    g = t.ground_truth.c
    return int(
        conn.execute(
            sa.select(sa.func.count()).where(g.model == model, g.prediction_ts >= start, g.prediction_ts <= end)
        ).scalar_one()
    )


def _records(
    conn: Connection,
    model: str,
    task: str,
    rows: Sequence[Any],
    start: datetime,
    end: datetime,
    *,
    version: str | None,
    embeddings: bool,
    labels: bool,
    end_inclusive: bool = False,
) -> list[Record]:
    embedded: dict[str, Any] = {}
    if embeddings and rows:
        e = t.embeddings.c
        where = [e.model == model, e.ts >= start, e.ts <= end if end_inclusive else e.ts < end]
        if version is not None:
            where.append(e.model_version == version)
        embedded = {
            r.prediction_id: r
            for r in conn.execute(sa.select(e.prediction_id, e.dtype, e.embedding).where(*where)).all()
        }
    truth: dict[str, Any] = {}
    if labels and rows:
        g = t.ground_truth.c
        span = [
            g.model == model,
            g.prediction_ts >= start,
            g.prediction_ts <= end if end_inclusive else g.prediction_ts < end,
        ]
        truth = {
            r.prediction_id: r
            for r in conn.execute(sa.select(g.prediction_id, *(g[c] for c in _LABELS[task])).where(*span)).all()
        }
    outputs, label_fields = _OUTPUTS[task], _LABEL_FIELDS[task]
    out = []
    for r in rows:
        emb = embedded.get(r.prediction_id)
        gt = truth.get(r.prediction_id)
        values = dict(zip(outputs, r[4:], strict=True))
        if gt is not None:
            values.update(zip(label_fields, gt[1:], strict=True))
        out.append(
            Record(
                prediction_id=r.prediction_id, version=r.model_version, ts=r.ts, cohort=r.cohort,
                embedding_dtype=0 if emb is None else emb.dtype, embedding=None if emb is None else emb.embedding,
                labelled=gt is not None, **values,
            )
        )  # fmt: skip
    return out
