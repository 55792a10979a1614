"""The sample browser's reads: samples by confusion cell, class, cohort, time, confidence and
queue, each with its prediction and ground truth; the nearest reference samples by embedding; boxes
to draw. Metadata only: the image bytes are served by the API after the access is logged
(:mod:`.sample_audit`, :func:`.samples.read_bytes`).

A sample is joined to its prediction through ``prediction_ids`` (which holds the prediction's
time, the partition key) and to its ground truth by that time; a sample whose prediction has not
arrived is listed with empty prediction fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t
from monitor.wire import ModelSpec

MAX_PAGE: Final = 500
#: Reference samples compared with one sample, at most (distances are computed in memory).
MAX_REFERENCE: Final = 20_000


@dataclass(frozen=True)
class SampleFilter:
    """What the browser asks for; every field optional. Classes are indices of the model's list."""

    #: (true class, predicted class): a confusion-matrix cell (classification)
    cell: tuple[int, int] | None = None
    #: the true or the predicted class (for detection: any predicted or true box of the class)
    class_index: int | None = None
    cohort: tuple[str, str] | None = None
    version: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    confidence_below: float | None = None
    queue: str | None = None
    labelled: bool | None = None
    limit: int = 50
    #: (captured_at, sample_id) of the last sample of the previous page
    after: tuple[datetime, str] | None = None


@dataclass(frozen=True)
class SampleView:
    """One sample with its prediction and ground truth, as the browser shows it."""

    sample_id: str
    prediction_id: str
    captured_at: datetime
    received_at: datetime
    reason: str
    media_type: str
    width: int
    height: int
    #: the size of the image the model saw (boxes are in its pixels); width × height when not shrunk
    source_width: int
    source_height: int
    size_bytes: int
    sha256: str
    faces: int
    plates: int
    masking: str
    exposed: bool
    key_id: str
    # the prediction (None until it arrives)
    version: str | None = None
    predicted_at: datetime | None = None
    status: str | None = None
    cohort: dict[str, Any] | None = None
    trace_id: str | None = None
    span_id: str | None = None
    request_id: str | None = None
    input_hash: str | None = None
    latency_ms: float | None = None
    predicted_class: str | None = None
    confidence: float | None = None
    probabilities: dict[str, float] | None = None
    boxes: list[list[float]] | None = None
    box_classes: list[str] | None = None
    box_scores: list[float] | None = None
    # the ground truth (None until labelled)
    label: str | None = None
    gt_boxes: list[list[float]] | None = None
    gt_classes: list[str] | None = None
    labelled_at: datetime | None = None
    # the queue asked for, if any
    queue_rank: int | None = None
    queue_score: float | None = None


def _query(model: str) -> tuple[sa.Select[Any], dict[str, Any]]:
    s, i, p, g = t.samples, t.prediction_ids, t.predictions, t.ground_truth
    query = (
        sa.select(
            s, p.c.model_version, p.c.ts.label("predicted_at"), p.c.status, p.c.cohort, p.c.trace_id, p.c.span_id,
            p.c.request_id, p.c.input_hash, p.c.latency_ms, p.c.predicted_class, p.c.confidence, p.c.probabilities,
            p.c.boxes, p.c.box_classes.label("pred_classes"), p.c.box_scores, g.c.label, g.c.boxes.label("gt_boxes"),
            g.c.box_classes.label("gt_classes"), g.c.labelled_at,
        )
        .select_from(s)
        .outerjoin(i, sa.and_(i.c.model == s.c.model, i.c.prediction_id == s.c.prediction_id))
        .outerjoin(p, sa.and_(p.c.model == s.c.model, p.c.ts == i.c.ts, p.c.prediction_id == s.c.prediction_id))
        .outerjoin(g, sa.and_(g.c.model == s.c.model, g.c.prediction_ts == i.c.ts, g.c.prediction_id == s.c.prediction_id))
        .where(s.c.model == model)
    )  # fmt: skip
    return query, {"s": s, "p": p, "g": g}


def browse(conn: Connection, spec: ModelSpec, flt: SampleFilter) -> list[SampleView]:
    """A page of samples, newest first; pass the last one's ``(captured_at, sample_id)`` as
    ``after`` for the next page."""
    query, tab = _query(spec.name)
    s, p, g = tab["s"].c, tab["p"].c, tab["g"].c
    where: list[Any] = []
    if flt.since is not None:
        where.append(s.captured_at >= flt.since)
    if flt.until is not None:
        where.append(s.captured_at < flt.until)
    if flt.version is not None:
        where.append(p.model_version == flt.version)
    if flt.cohort is not None:
        where.append(p.cohort[flt.cohort[0]].as_string() == flt.cohort[1])
    if flt.confidence_below is not None:
        where.append(p.confidence < flt.confidence_below)
    if flt.labelled is not None:
        where.append(g.labelled_at.is_not(None) if flt.labelled else g.labelled_at.is_(None))
    detection_class = None
    if spec.task == "classification":
        if flt.cell is not None:
            where += [g.label == flt.cell[0], p.predicted_class == flt.cell[1]]
        if flt.class_index is not None:
            where.append(sa.or_(g.label == flt.class_index, p.predicted_class == flt.class_index))
    else:
        if flt.cell is not None:
            raise ValueError("cell filters classification samples; filter detection samples by class")
        detection_class = flt.class_index
    if flt.after is not None:
        at, sid = flt.after
        where.append(sa.or_(s.captured_at < at, sa.and_(s.captured_at == at, s.sample_id < sid)))
    q = t.label_queue_items.c
    if flt.queue is not None:
        query = query.add_columns(q.rank, q.score).join(
            t.label_queue_items, sa.and_(q.model == s.model, q.prediction_id == s.prediction_id, q.queue == flt.queue)
        )
    query = query.where(*where).order_by(s.captured_at.desc(), s.sample_id.desc())
    limit = max(1, min(flt.limit, MAX_PAGE))
    if detection_class is None:
        return [_view(r, spec) for r in conn.execute(query.limit(limit))]
    # box classes are packed arrays: filtered here, reading on until the page is full
    out: list[SampleView] = []
    for row in conn.execute(query.execution_options(yield_per=500)):
        view = _view(row, spec)
        name = spec.classes[detection_class]
        if name in (view.box_classes or []) or name in (view.gt_classes or []):
            out.append(view)
            if len(out) >= limit:
                break
    return out


def get(conn: Connection, spec: ModelSpec, sample_id: str) -> SampleView | None:
    query, tab = _query(spec.name)
    row = conn.execute(query.where(tab["s"].c.sample_id == sample_id)).first()
    return None if row is None else _view(row, spec)


def _names(blob: bytes | None, classes: Sequence[str]) -> list[str] | None:
    if blob is None:
        return None
    return [classes[i] if 0 <= i < len(classes) else str(i) for i in np.frombuffer(blob, dtype="<i4").tolist()]


def _floats(blob: bytes | None, width: int = 1) -> Any:
    if blob is None:
        return None
    values = np.frombuffer(blob, dtype="<f4").astype(np.float64)
    return values.reshape(-1, width).round(3).tolist() if width > 1 else values.round(6).tolist()


def _view(r: Any, spec: ModelSpec) -> SampleView:
    classes = spec.classes
    probabilities = None
    if r.probabilities is not None:
        values = np.frombuffer(r.probabilities, dtype="<f4")
        probabilities = {classes[i] if i < len(classes) else str(i): round(float(v), 6) for i, v in enumerate(values)}
    mapping = r._mapping
    return SampleView(
        sample_id=r.sample_id, prediction_id=r.prediction_id, captured_at=r.captured_at, received_at=r.received_at,
        reason=r.reason, media_type=r.media_type, width=r.width, height=r.height,
        source_width=r.source_width or r.width, source_height=r.source_height or r.height, size_bytes=r.size_bytes,
        sha256=bytes(r.sha256).hex(), faces=r.faces, plates=r.plates, masking=r.masking, exposed=bool(r.exposed),
        key_id=r.key_id, version=r.model_version, predicted_at=r.predicted_at,
        status=None if r.status is None else ("ok" if r.status == 0 else "error"), cohort=r.cohort,
        trace_id=r.trace_id, span_id=r.span_id, request_id=r.request_id, input_hash=r.input_hash,
        latency_ms=None if r.latency_ms is None else float(r.latency_ms),
        predicted_class=None if r.predicted_class is None else classes[r.predicted_class],
        confidence=None if r.confidence is None else round(float(r.confidence), 6), probabilities=probabilities,
        boxes=_floats(r.boxes, 4), box_classes=_names(r.pred_classes, classes), box_scores=_floats(r.box_scores),
        label=None if r.label is None else classes[r.label], gt_boxes=_floats(r.gt_boxes, 4),
        gt_classes=_names(r.gt_classes, classes), labelled_at=r.labelled_at,
        queue_rank=mapping.get("rank"), queue_score=mapping.get("score"),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# nearest reference samples


@dataclass(frozen=True)
class Neighbour:
    sample_id: str
    prediction_id: str
    distance: float
    predicted_class: str | None
    label: str | None
    captured_at: datetime


@dataclass(frozen=True)
class Neighbours:
    """The reference a sample was compared with, and its nearest samples there."""

    #: ``drift reference`` (the version's fitted drift reference span) or ``labelled samples``
    reference: str
    reference_start: datetime | None
    reference_end: datetime | None
    compared: int
    nearest: list[Neighbour]


def _embedding(conn: Connection, model: str, prediction_id: str) -> tuple[np.ndarray, str, datetime] | None:
    i, e = t.prediction_ids.c, t.embeddings.c
    row = conn.execute(
        sa.select(e.embedding, e.dtype, e.model_version, e.ts)
        .select_from(t.prediction_ids)
        .join(t.embeddings, sa.and_(e.model == i.model, e.ts == i.ts, e.prediction_id == i.prediction_id))
        .where(i.model == model, i.prediction_id == prediction_id)
    ).first()  # fmt: skip
    if row is None:
        return None
    return _vector(row.embedding, row.dtype), row.model_version, row.ts


def _vector(blob: bytes, dtype: int) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f2" if dtype == 2 else "<f4").astype(np.float64)


def nearest_reference(conn: Connection, spec: ModelSpec, sample_id: str, *, k: int = 5) -> Neighbours | None:
    """The ``k`` samples of the reference nearest to this sample's embedding (Euclidean).

    The reference is the span of the drift reference fitted for the sample's version; without
    one (not fitted yet, or no sample captured in it), the model's labelled samples. None when the
    sample is unknown or its prediction carries no embedding."""
    s = t.samples.c
    own = conn.execute(sa.select(s.prediction_id).where(s.model == spec.name, s.sample_id == sample_id)).scalar()
    if own is None:
        return None
    found = _embedding(conn, spec.name, own)
    if found is None:
        return None
    vector, version, _ = found
    r = t.drift_references.c
    span = conn.execute(
        sa.select(sa.func.min(r.reference_start), sa.func.max(r.reference_end))
        .where(r.model == spec.name, r.version == version)
    ).first()  # fmt: skip
    candidates: list[Any] = []
    label = "drift reference"
    start = end = None
    if span is not None and span[0] is not None:
        start, end = span
        candidates = _reference_rows(conn, spec.name, own, start=start, end=end)
    if not candidates:
        label, start, end = "labelled samples", None, None
        candidates = _reference_rows(conn, spec.name, own, labelled=True)
    same = [c for c in candidates if len(c.embedding) // (2 if c.dtype == 2 else 4) == vector.size]
    if not same:
        return Neighbours(label, start, end, 0, [])
    matrix = np.stack([_vector(c.embedding, c.dtype) for c in same])
    distances = np.sqrt(((matrix - vector) ** 2).sum(axis=1))
    order = np.argsort(distances, kind="stable")[:k]
    nearest = [
        Neighbour(same[j].sample_id, same[j].prediction_id, float(distances[j]),
                  None if same[j].predicted_class is None else spec.classes[same[j].predicted_class],
                  None if same[j].label is None else spec.classes[same[j].label], same[j].captured_at)
        for j in order
    ]  # fmt: skip
    return Neighbours(label, start, end, len(same), nearest)


def _reference_rows(
    conn: Connection, model: str, exclude: str, *, start: datetime | None = None, end: datetime | None = None,
    labelled: bool = False,
) -> list[Any]:
    s, i, e, p, g = t.samples.c, t.prediction_ids.c, t.embeddings.c, t.predictions.c, t.ground_truth.c
    query = (
        sa.select(s.sample_id, s.prediction_id, s.captured_at, e.embedding, e.dtype, p.predicted_class, g.label)
        .select_from(t.samples)
        .join(t.prediction_ids, sa.and_(i.model == s.model, i.prediction_id == s.prediction_id))
        .join(t.embeddings, sa.and_(e.model == s.model, e.ts == i.ts, e.prediction_id == s.prediction_id))
        .join(t.predictions, sa.and_(p.model == s.model, p.ts == i.ts, p.prediction_id == s.prediction_id))
        .outerjoin(t.ground_truth, sa.and_(g.model == s.model, g.prediction_ts == i.ts, g.prediction_id == s.prediction_id))
        .where(s.model == model, s.prediction_id != exclude)
    )  # fmt: skip
    if start is not None and end is not None:
        query = query.where(i.ts >= start, i.ts < end)
    if labelled:
        query = query.where(g.labelled_at.is_not(None))
    return list(conn.execute(query.order_by(s.captured_at.desc()).limit(MAX_REFERENCE)))
