"""Labelling queues: per model, the unlabelled samples worth labelling first, chosen by a strategy
of :mod:`.selection`, their size and age, and the ``labelling.ready`` event when one is built.

A queue is rebuilt whole (:func:`build_queue`): its candidates are the model's samples whose
prediction has no ground truth yet, in a time range (default: the last 7 days), optionally of
one version or cohort value. Items stay in the queue when they are labelled; a queue's *pending*
items are those still without ground truth, however it arrived (Label Studio's webhook, an
imported file, the SDK), and its *age* is how long its oldest pending item has waited.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.rollout_config import AutomationConfig
from monitor.server.services import selection
from monitor.server.services.automation import emit
from monitor.server.services.decode import probability_matrix
from monitor.server.store import tables as t
from monitor.wire import STATUS_OK, ModelSpec

#: Candidates read per build, newest first: scoring is in memory.
MAX_CANDIDATES: Final = 50_000
_REFERENCE_SIZE: Final = 2000


@dataclass(frozen=True)
class QueueSpec:
    """How to build a queue (``POST /v1/models/{model}/queues/{queue}``)."""

    strategy: str = "least_confidence"
    size: int = 100
    since: datetime | None = None
    until: datetime | None = None
    version: str | None = None
    #: disagreement: the version compared with (default: any other version on the same input)
    baseline: str | None = None
    cohort: tuple[str, str] | None = None
    #: the most items of one predicted class (None: no cap); ``budgets`` per class name overrides it
    per_class: int | None = None
    budgets: Mapping[str, int] = field(default_factory=dict)
    diversity: bool = True
    pool_factor: int = 4
    seed: int = 0

    def check(self, spec: ModelSpec) -> None:
        if self.strategy not in selection.STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(selection.STRATEGIES)}")
        if self.strategy in selection.CLASSIFICATION_ONLY and spec.task != "classification":
            raise ValueError(f"{self.strategy} scores class probabilities: it is for classification models")
        if self.strategy in selection.DETECTION_ONLY and spec.task != "detection":
            raise ValueError(f"{self.strategy} scores boxes: it is for detection models")
        if not 1 <= self.size <= 10_000:
            raise ValueError("size must be 1 to 10000")
        if not 1 <= self.pool_factor <= 50:
            raise ValueError("pool_factor must be 1 to 50")
        unknown = sorted(set(self.budgets) - set(spec.classes))
        if unknown:
            raise ValueError(f"budgets: {unknown[0]!r} is not a class of {spec.name!r}")


@dataclass(frozen=True)
class QueueStatus:
    model: str
    queue: str
    strategy: str
    params: dict[str, Any]
    built_at: datetime
    size: int
    labelled: int
    pending: int
    #: how long the oldest pending item has waited (0 when none is pending)
    age_seconds: float


@dataclass(frozen=True)
class QueueItem:
    rank: int
    prediction_id: str
    sample_id: str | None
    score: float
    labelled: bool
    exported_at: datetime | None


@dataclass(frozen=True)
class _Candidate:
    prediction_id: str
    version: str
    predicted_class: int | None
    probabilities: bytes | None
    boxes: bytes | None
    box_classes: bytes | None
    box_scores: bytes | None
    input_hash: str | None
    ts: datetime
    embedding: np.ndarray | None


def _candidates(conn: Connection, spec: ModelSpec, q: QueueSpec, start: datetime, end: datetime) -> list[_Candidate]:
    s, i, p, g, e = t.samples.c, t.prediction_ids.c, t.predictions.c, t.ground_truth.c, t.embeddings.c
    query = (
        sa.select(s.prediction_id, p.model_version, p.predicted_class, p.probabilities, p.boxes, p.box_classes,
                  p.box_scores, p.input_hash, p.ts, e.embedding, e.dtype)
        .select_from(t.samples)
        .join(t.prediction_ids, sa.and_(i.model == s.model, i.prediction_id == s.prediction_id))
        .join(t.predictions, sa.and_(p.model == s.model, p.ts == i.ts, p.prediction_id == s.prediction_id))
        .outerjoin(t.ground_truth, sa.and_(g.model == s.model, g.prediction_ts == i.ts, g.prediction_id == s.prediction_id))
        .outerjoin(t.embeddings, sa.and_(e.model == s.model, e.ts == i.ts, e.prediction_id == s.prediction_id))
        .where(s.model == spec.name, p.ts >= start, p.ts < end, p.status == STATUS_OK, g.labelled_at.is_(None))
    )  # fmt: skip
    if q.version is not None:
        query = query.where(p.model_version == q.version)
    if q.cohort is not None:
        query = query.where(p.cohort[q.cohort[0]].as_string() == q.cohort[1])
    rows = conn.execute(query.order_by(p.ts.desc(), s.prediction_id).limit(MAX_CANDIDATES)).all()
    return [
        _Candidate(r.prediction_id, r.model_version, r.predicted_class, r.probabilities, r.boxes, r.box_classes,
                   r.box_scores, r.input_hash, r.ts,
                   None if r.embedding is None else np.frombuffer(r.embedding, "<f2" if r.dtype == 2 else "<f4").astype(np.float64))
        for r in rows
    ]  # fmt: skip


def _boxes(c: _Candidate) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes = np.frombuffer(c.boxes or b"", "<f4").reshape(-1, 4).astype(np.float64)
    classes = np.frombuffer(c.box_classes or b"", "<i4")
    scores = np.frombuffer(c.box_scores or b"", "<f4").astype(np.float64)
    return boxes, classes, scores


def score(conn: Connection, spec: ModelSpec, q: QueueSpec, cands: list[_Candidate], start: datetime, end: datetime) -> np.ndarray:
    """The strategy's score of each candidate (higher: label first); NaN: not scorable."""
    n = len(cands)
    if q.strategy == "random":
        return np.random.default_rng(q.seed).random(n)
    if q.strategy in ("least_confidence", "margin", "entropy"):
        if spec.task == "detection":
            return selection.box_uncertainty([_boxes(c)[2] for c in cands])
        out = np.full(n, np.nan)
        have = [j for j, c in enumerate(cands) if c.probabilities is not None]
        if have:
            matrix = probability_matrix([cands[j].probabilities for j in have], len(spec.classes)).astype(np.float64)  # type: ignore[misc]
            fn = {"least_confidence": selection.least_confidence, "margin": selection.margin, "entropy": selection.entropy}
            out[have] = fn[q.strategy](matrix)
        return out
    if q.strategy == "false_positive":
        return np.array([selection.false_positive(*_boxes(c), spec.operating_threshold) for c in cands])
    if q.strategy == "drift":
        return _drift_scores(conn, spec, cands)
    return _disagreement(conn, spec, q, cands, start, end)


def _drift_scores(conn: Connection, spec: ModelSpec, cands: list[_Candidate]) -> np.ndarray:
    out = np.full(len(cands), np.nan)
    for version in sorted({c.version for c in cands}):
        idx = [j for j, c in enumerate(cands) if c.version == version and c.embedding is not None]
        if not idx:
            continue
        dim = cands[idx[0]].embedding.size  # type: ignore[union-attr]
        reference = np.array([r for r in _reference_embeddings(conn, spec.name, version) if r.size == dim]).reshape(-1, dim)
        same = [j for j in idx if cands[j].embedding.size == dim]  # type: ignore[union-attr]
        if len(reference):
            out[same] = selection.distance_to_reference(np.stack([cands[j].embedding for j in same]), reference)  # type: ignore[misc]
    return out


def _reference_embeddings(conn: Connection, model: str, version: str) -> list[np.ndarray]:
    """The embeddings of the version's fitted drift reference span, else its first predictions."""
    r, e = t.drift_references.c, t.embeddings.c
    span = conn.execute(
        sa.select(sa.func.min(r.reference_start), sa.func.max(r.reference_end)).where(r.model == model, r.version == version)
    ).first()
    query = sa.select(e.embedding, e.dtype).where(e.model == model, e.model_version == version)
    if span is not None and span[0] is not None:
        query = query.where(e.ts >= span[0], e.ts < span[1])
    rows = conn.execute(query.order_by(e.ts).limit(_REFERENCE_SIZE)).all()
    return [np.frombuffer(row.embedding, "<f2" if row.dtype == 2 else "<f4").astype(np.float64) for row in rows]


def _disagreement(
    conn: Connection, spec: ModelSpec, q: QueueSpec, cands: list[_Candidate], start: datetime, end: datetime
) -> np.ndarray:
    """Each candidate against the other version's prediction of the same input (mirrored traffic:
    the same ``input_hash`` within an hour either side of the range)."""
    out = np.full(len(cands), np.nan)
    hashes = sorted({c.input_hash for c in cands if c.input_hash})
    p = t.predictions.c
    others: dict[str, dict[str, Any]] = {}
    for k in range(0, len(hashes), 500):
        query = sa.select(p.input_hash, p.model_version, p.probabilities, p.boxes, p.box_classes, p.box_scores).where(
            p.model == spec.name, p.input_hash.in_(hashes[k : k + 500]), p.status == STATUS_OK,
            p.ts >= start - timedelta(hours=1), p.ts < end + timedelta(hours=1),
        )  # fmt: skip
        if q.baseline is not None:
            query = query.where(p.model_version == q.baseline)
        for row in conn.execute(query):
            others.setdefault(row.input_hash, {}).setdefault(row.model_version, row)
    for j, c in enumerate(cands):
        if not c.input_hash:
            continue
        other = next((row for v, row in sorted(others.get(c.input_hash, {}).items()) if v != c.version), None)
        if other is None:
            continue
        if spec.task == "classification":
            if c.probabilities is None or other.probabilities is None:
                continue
            a, b = probability_matrix([c.probabilities, other.probabilities], len(spec.classes)).astype(np.float64)
            out[j] = float(selection.total_variation(a[None], b[None])[0])
        else:
            mine = _boxes(c)
            theirs = _boxes(_Candidate("", "", None, None, other.boxes, other.box_classes, other.box_scores, None, c.ts, None))
            thr = spec.operating_threshold
            out[j] = selection.box_disagreement(
                (mine[0][mine[2] >= thr], mine[1][mine[2] >= thr]), (theirs[0][theirs[2] >= thr], theirs[1][theirs[2] >= thr]), thr
            )
    return out


def build_queue(
    conn: Connection, automation: AutomationConfig, spec: ModelSpec, name: str, q: QueueSpec, *, now: datetime
) -> QueueStatus:
    """Select the queue's items, replace the queue and emit ``labelling.ready``."""
    q.check(spec)
    end = q.until or now
    start = q.since or end - timedelta(days=7)
    cands = _candidates(conn, spec, q, start, end)
    scores = score(conn, spec, q, cands, start, end) if cands else np.zeros(0)
    keep = [j for j in range(len(cands)) if np.isfinite(scores[j])]
    cands, scores = [cands[j] for j in keep], scores[keep]
    classes = np.array([_class_of(c, spec) for c in cands], dtype=np.int64)
    embeddings = None
    if q.diversity and q.strategy != "random" and cands and all(c.embedding is not None for c in cands):
        dims = {c.embedding.size for c in cands}  # type: ignore[union-attr]
        if len(dims) == 1:
            embeddings = np.stack([c.embedding for c in cands])  # type: ignore[misc]
    budgets = {spec.classes.index(k): v for k, v in q.budgets.items()}
    chosen = selection.select(scores, classes, q.size, budgets=budgets, per_class=q.per_class, embeddings=embeddings,
                              pool_factor=q.pool_factor) if cands else []  # fmt: skip
    items = t.label_queue_items
    conn.execute(sa.delete(items).where(items.c.model == spec.name, items.c.queue == name))
    if chosen:
        conn.execute(sa.insert(items), [
            {"model": spec.name, "queue": name, "prediction_id": cands[j].prediction_id, "rank": rank + 1,
             "score": float(scores[j]), "added_at": now, "exported_at": None}
            for rank, j in enumerate(chosen)
        ])  # fmt: skip
    params = _params(q)
    queues = t.label_queues
    conn.execute(sa.delete(queues).where(queues.c.model == spec.name, queues.c.queue == name))
    conn.execute(sa.insert(queues).values(model=spec.name, queue=name, strategy=q.strategy, params=params, built_at=now,
                                          size=len(chosen)))  # fmt: skip
    emit(conn, automation, model=spec.name, kind="labelling.ready", key=f"{name}\x00{now.isoformat()}",
         data={"queue": name, "strategy": q.strategy, "size": len(chosen), "candidates": len(cands),
               "url": f"/v1/models/{spec.name}/queues/{name}",
               "export": f"/v1/models/{spec.name}/queues/{name}/export?format=label-studio"},
         now=now)  # fmt: skip
    status = queue_status(conn, spec.name, name, now=now)
    assert status is not None
    return status


def _class_of(c: _Candidate, spec: ModelSpec) -> int:
    if spec.task == "classification":
        return -1 if c.predicted_class is None else int(c.predicted_class)
    _, classes, scores = _boxes(c)
    return int(classes[int(np.argmax(scores))]) if len(scores) else -1


def _params(q: QueueSpec) -> dict[str, Any]:
    out = {k: v for k, v in asdict(q).items() if v not in (None, {}) and k != "strategy"}
    for key in ("since", "until"):
        if key in out:
            out[key] = out[key].isoformat()
    if "cohort" in out:
        out["cohort"] = ":".join(out["cohort"])
    return out


def _labelled_items(model: str) -> sa.Select[Any]:
    """Queue items with whether their prediction has ground truth."""
    q, i, g, s = t.label_queue_items.c, t.prediction_ids.c, t.ground_truth.c, t.samples.c
    return (
        sa.select(q.queue, q.rank, q.prediction_id, q.score, q.added_at, q.exported_at, s.sample_id,
                  g.labelled_at.is_not(None).label("labelled"))
        .select_from(t.label_queue_items)
        .outerjoin(t.samples, sa.and_(s.model == q.model, s.prediction_id == q.prediction_id))
        .outerjoin(t.prediction_ids, sa.and_(i.model == q.model, i.prediction_id == q.prediction_id))
        .outerjoin(t.ground_truth, sa.and_(g.model == q.model, g.prediction_ts == i.ts, g.prediction_id == q.prediction_id))
        .where(q.model == model)
    )  # fmt: skip


def queue_items(conn: Connection, model: str, name: str, *, pending_only: bool = False) -> list[QueueItem]:
    rows = conn.execute(_labelled_items(model).where(t.label_queue_items.c.queue == name).order_by(t.label_queue_items.c.rank))
    items = [QueueItem(r.rank, r.prediction_id, r.sample_id, float(r.score), bool(r.labelled), r.exported_at) for r in rows]
    return [i for i in items if not i.labelled] if pending_only else items


def queue_statuses(conn: Connection, model: str | None = None, *, now: datetime) -> list[QueueStatus]:
    """Every queue (of ``model``), with its pending items and age."""
    qs = t.label_queues.c
    query = sa.select(t.label_queues).order_by(qs.model, qs.queue)
    if model is not None:
        query = query.where(qs.model == model)
    out = []
    for row in conn.execute(query).all():
        pending = [r for r in conn.execute(_labelled_items(row.model).where(t.label_queue_items.c.queue == row.queue))]
        waiting = [r.added_at for r in pending if not r.labelled]
        out.append(QueueStatus(
            row.model, row.queue, row.strategy, dict(row.params), row.built_at, row.size,
            labelled=sum(bool(r.labelled) for r in pending), pending=len(waiting),
            age_seconds=max(0.0, (now - min(waiting)).total_seconds()) if waiting else 0.0,
        ))  # fmt: skip
    return out


def queue_status(conn: Connection, model: str, name: str, *, now: datetime) -> QueueStatus | None:
    return next((q for q in queue_statuses(conn, model, now=now) if q.queue == name), None)


def mark_exported(conn: Connection, model: str, name: str, prediction_ids: list[str], *, now: datetime) -> None:
    q = t.label_queue_items.c
    for k in range(0, len(prediction_ids), 500):
        conn.execute(
            sa.update(t.label_queue_items)
            .where(q.model == model, q.queue == name, q.prediction_id.in_(prediction_ids[k : k + 500]))
            .values(exported_at=now)
        )


def delete_queue(conn: Connection, model: str, name: str) -> bool:
    conn.execute(sa.delete(t.label_queue_items).where(t.label_queue_items.c.model == model, t.label_queue_items.c.queue == name))
    gone = conn.execute(sa.delete(t.label_queues).where(t.label_queues.c.model == model, t.label_queues.c.queue == name))
    return bool(gone.rowcount)
