"""The ingest service: validate a batch record by record, apply the PII policy, store the good rows.

A malformed record is rejected with its index and a reason; the good records of the same batch
are stored. Nothing here knows about HTTP (or brokers): the API and the stream consumers call
:func:`ingest_predictions` and :func:`ingest_ground_truth`, which store a batch in one
transaction with its bookkeeping and its SLO events.

Predictions are identified by ``(model, prediction_id)`` whatever their timestamps: the first
stored record wins, a retry (or the same id from another client, with another timestamp or none)
is a duplicate (:func:`monitor.server.store.writes.claim_prediction_ids`). Ground truth is a
series of revisions per prediction; the newest ``labelled_at`` wins and an identical or older
revision is a duplicate. It may arrive before its prediction: it then waits in
``ground_truth_pending`` and moves to ``ground_truth`` in the transaction that stores the
prediction.

Lock order. Every write transaction takes its row locks in this order, rows of one table in key
order, so batches of predictions and ground truth of the same model version never deadlock:

0. advisory locks of the predictions a ground-truth batch annotates (PostgreSQL), in (model, id)
   order: one writer of a prediction's annotations at a time
1. ``prediction_ids`` (claims), then ``predictions`` and ``embeddings`` (new rows only); for ground
   truth, ``label_annotations`` and ``withdrawn_labels`` (rows of predictions locked at step 0)
2. ``ground_truth_pending``
3. ``ground_truth``
4. ``label_increments``
5. ``models``
6. ``model_versions``
7. ``dirty_hours``
8. ``slo_events``

Steps 4 to 8 are rows that every batch of a model shares: a transaction collects what it changes
there (:class:`Changes`) and applies it at its end, one statement per table. The evaluate job
touches 4 and 7 only, in that order.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from monitor.errors import LimitExceeded, WireError
from monitor.server.services import annotations as annotation_service
from monitor.server.services.models import model_specs
from monitor.server.services.windows import hour_floor
from monitor.server.settings import Settings
from monitor.server.slo.events import (
    QUALITY_SLIS,
    Tally,
    add_events,
    label_tally,
    minute_floor,
    prediction_tally,
    slos_for,
)
from monitor.server.slo.spec import SLO
from monitor.server.store import writes as w
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager
from monitor.server.store.reads import read_keys
from monitor.wire import (
    DEFAULT_LIMITS,
    GroundTruth,
    Limits,
    ModelSpec,
    Prediction,
    claimed_model,
    parse_ground_truth,
    parse_prediction,
)

MAX_RECORDS = 10_000

T = TypeVar("T", Prediction, GroundTruth)


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def batch_records(payload: Any) -> list[Any]:
    """The ``records`` list of a request body, or :class:`WireError` saying what is wrong."""
    if not isinstance(payload, dict) or not isinstance(payload.get("records"), list):
        raise WireError('the body must be a JSON object {"records": [...]}')
    extra = set(payload) - {"records"}
    if extra:
        raise WireError(f"unknown top-level field {sorted(extra)[0][:64]!r}; the body is {{\"records\": [...]}}")
    records: list[Any] = payload["records"]
    if not records:
        raise WireError("records is empty")
    if len(records) > MAX_RECORDS:
        raise LimitExceeded(f"{len(records)} records in one batch; the limit is {MAX_RECORDS}, split it")
    return records


def record_models(records: Sequence[Any]) -> set[str]:
    """The model names the records claim (for authorisation before any parsing); a name the
    database could not hold is left out, and its record rejected when parsed."""
    return {name for name in map(claimed_model, records) if name is not None}


class CohortPolicy:
    """Drops or hashes the cohort fields configured as PII (``pii.drop`` / ``pii.hash``)."""

    def __init__(self, settings: Settings) -> None:
        self.drop = frozenset(settings.pii_drop)
        self.hash = frozenset(settings.pii_hash)
        self.key = settings.pii_hash_key.encode()
        self.active = bool(self.drop or self.hash)

    def apply(self, cohort: dict[str, Any] | None) -> dict[str, Any] | None:
        if not self.active or not cohort:
            return cohort
        out = {}
        for name, value in cohort.items():
            if name in self.drop:
                continue
            if name in self.hash:
                value = hmac.new(self.key, str(value).encode(), hashlib.sha256).hexdigest()[:16]
            out[name] = value
        return out or None


def _parse_all(
    records: Sequence[Any],
    parse: Callable[..., T],
    specs: dict[str, ModelSpec],
    now: datetime,
    limits: Limits,
    refuse: Callable[[T], str | None] | None = None,
) -> tuple[list[T], list[tuple[int, str]]]:
    good: list[T] = []
    rejected: list[tuple[int, str]] = []
    for i, record in enumerate(records):
        try:
            parsed = parse(record, specs.get, now=now, limits=limits)
        except WireError as exc:
            rejected.append((i, str(exc)))
            continue
        reason = refuse(parsed) if refuse is not None else None
        if reason is None:
            good.append(parsed)
        else:
            rejected.append((i, reason))
    return good, rejected


def ingest_predictions(
    engine: Engine,
    records: Sequence[Any],
    *,
    now: datetime,
    partitions: PartitionManager,
    policy: CohortPolicy,
    limits: Limits = DEFAULT_LIMITS,
    slos: Sequence[SLO] = (),
    oldest: datetime | None = None,
) -> IngestResult:
    """``oldest``: predictions timed before this (the retention cutoff) are rejected: they would be
    deleted by the next housekeeping run, and their day's partition may be gone already."""
    with engine.connect() as conn:
        specs = model_specs(conn, record_models(records))

    def expired(p: Prediction) -> str | None:
        if oldest is None or p.ts >= oldest:
            return None
        return f"timestamp {p.ts.isoformat()} is older than the predictions retention (before {oldest:%Y-%m-%d %H:%M}Z)"

    good, rejected = _parse_all(records, parse_prediction, specs, now, limits, expired)
    if policy.active:
        for p in good:
            p.cohort = policy.apply(p.cohort)
    written = write_predictions(engine, good, now=now, partitions=partitions, slos=slos)
    return IngestResult(written.accepted, written.duplicates, rejected)


def ingest_ground_truth(
    engine: Engine,
    records: Sequence[Any],
    *,
    now: datetime,
    limits: Limits = DEFAULT_LIMITS,
    slos: Sequence[SLO] = (),
) -> IngestResult:
    with engine.connect() as conn:
        specs = model_specs(conn, record_models(records))
    good, rejected = _parse_all(records, parse_ground_truth, specs, now, limits)
    written = write_ground_truth(engine, good, now=now, slos=slos)
    return IngestResult(written.accepted, written.duplicates, rejected)


# --------------------------------------------------------------------------------------------
# storing validated records


@dataclass(frozen=True, slots=True)
class WriteResult:
    accepted: int
    duplicates: int


def write_predictions(
    engine: Engine, preds: Sequence[Prediction], *, now: datetime, partitions: PartitionManager, slos: Sequence[SLO] = ()
) -> WriteResult:
    """Store a validated batch in one transaction; returns how many rows were new and how many
    were duplicates. ``slos``: the configured SLOs, whose events the new rows are counted as."""
    if not preds:
        return WriteResult(0, 0)
    partitions.ensure_timestamps(p.ts for p in preds)
    with write_transaction(engine) as conn:
        new = store_predictions(conn, preds, now=now, slos=slos)
    partitions.note_written(p.ts for p in new)
    return WriteResult(len(new), len(preds) - len(new))


def write_ground_truth(engine: Engine, gts: Sequence[GroundTruth], *, now: datetime, slos: Sequence[SLO] = ()) -> WriteResult:
    """Store ground-truth revisions in one transaction; the newest ``labelled_at`` per prediction
    wins. First labels are counted as events of the quality SLOs among ``slos``."""
    if not gts:
        return WriteResult(0, 0)
    with write_transaction(engine) as conn:
        accepted = store_ground_truth(conn, gts, now=now, slos=slos)
    return WriteResult(accepted, len(gts) - accepted)


def store_predictions(conn: Connection, preds: Sequence[Prediction], *, now: datetime, slos: Sequence[SLO] = ()) -> list[Prediction]:
    """Store the predictions whose ids are new, with their bookkeeping; returns them."""
    by_model: dict[str, dict[str, Prediction]] = defaultdict(dict)
    for p in preds:
        by_model[p.model].setdefault(p.prediction_id, p)  # the first of an id in the batch wins
    new: list[Prediction] = []
    for model in sorted(by_model):
        group = by_model[model]
        claimed = w.claim_prediction_ids(conn, model, [(pid, p.ts) for pid, p in group.items()])
        new += [p for pid, p in group.items() if pid in claimed]
    w.insert_predictions(conn, new, now)
    changes = Changes(slos)
    changes.predictions(new)
    # ground truth that was waiting for these predictions; their hours are dirty (new rows), so
    # the labels need no increment of their own
    for model in sorted({p.model for p in new}):
        keys = {p.prediction_id: (p.ts, p.model_version) for p in new if p.model == model}
        adopted = _adopt(conn, model, keys, changes)
        changes.label_events(conn, model, adopted)
    changes.slo_tally(prediction_tally(slos, new))
    changes.apply(conn, now)
    return new


def store_ground_truth(conn: Connection, gts: Sequence[GroundTruth], *, now: datetime, slos: Sequence[SLO] = ()) -> int:
    """Store ground-truth revisions; returns how many were accepted (new or newer).

    A classification label is an annotation (:mod:`monitor.server.services.annotations`): it is
    kept per annotator, and the model's label policy derives the label stored here. A detection
    label is stored as it is."""
    # a batch may hold several revisions of one prediction: oldest first so the newest wins here too
    by_model: dict[str, list[GroundTruth]] = defaultdict(list)
    for g in sorted(gts, key=lambda g: g.labelled_at):
        by_model[g.model].append(g)
    annotated = [(g.model, g.prediction_id) for g in gts if g.label is not None]
    annotation_service.lock_predictions(conn, annotated)  # lock-order step 0
    policies = annotation_service.model_policies(conn, sorted({m for m, _ in annotated}))
    changes = Changes(slos)
    accepted = 0
    for model in sorted(by_model):
        group = by_model[model]
        labels = [g for g in group if g.label is None]
        classified = [g for g in group if g.label is not None]
        accepted += _model_ground_truth(conn, model, labels, now, changes) if labels else 0
        if classified:
            policy = policies.get(model, annotation_service.DEFAULT_POLICY)
            derived, new = annotation_service.annotate(conn, model, classified, policy, now=now, changes=changes)
            accepted += new
            if derived:
                _model_ground_truth(conn, model, derived, now, changes)
    changes.apply(conn, now)
    return accepted


def _model_ground_truth(conn: Connection, model: str, group: list[GroundTruth], now: datetime, changes: Changes) -> int:
    ids = sorted({g.prediction_id for g in group})
    preds = w.prediction_keys(conn, model, ids)
    stored_gt = w.stored_ground_truth(conn, model, [(ts, pid) for pid, (ts, _) in preds.items()])
    stored_pending = w.stored_pending(conn, model, ids)
    current: dict[str, Any] = {**stored_pending, **stored_gt}
    matched: dict[str, dict[str, Any]] = {}
    pending: dict[str, dict[str, Any]] = {}
    first_revisions = accepted = 0
    for g in group:
        values = w.ground_truth_values(g, now)
        stored = current.get(g.prediction_id)
        if stored is not None and (g.labelled_at < stored.labelled_at or _same_label(stored, values)):
            continue  # a retry, or a revision older than the one we hold
        first_revisions += stored is None
        accepted += 1
        current[g.prediction_id] = _Row(values)
        target = matched if g.prediction_id in preds else pending
        target[g.prediction_id] = {"model": model, "prediction_id": g.prediction_id, **values}
    # pending revisions whose prediction is visible now (it was stored by a transaction that
    # could not see them) are taken, and the newer of the two revisions is kept below
    adopted = [pid for pid in matched if pid in stored_pending]
    if adopted:
        w.take_pending(conn, model, adopted)
    w.upsert_pending(conn, list(pending.values()))
    if matched:
        w.upsert_ground_truth(conn, [{**row, "prediction_ts": preds[pid][0]} for pid, row in matched.items()])
        # a changed label invalidates its evaluated hour; a first label is merged in as an increment
        changes.dirty.update((model, hour_floor(preds[pid][0])) for pid in matched if pid in stored_gt)
        first = {pid: preds[pid] for pid in matched if pid not in stored_gt}
        changes.first_labels(model, first)
        changes.label_events(conn, model, [(ts, pid) for pid, (ts, _) in first.items()])
    changes.ground_truth[model] += first_revisions
    return accepted


def _adopt(conn: Connection, model: str, keys: dict[str, tuple[datetime, str]], changes: Changes) -> list[tuple[datetime, str]]:
    """Move waiting ground truth of these predictions (id -> (ts, version)) into ``ground_truth``;
    returns the (ts, id) of the predictions that got it."""
    waiting = w.take_pending(conn, model, list(keys))
    if not waiting:
        return []
    w.upsert_ground_truth(conn, [{**row, "prediction_ts": keys[row["prediction_id"]][0]} for row in waiting])
    changes.labelled(model, [keys[row["prediction_id"]] for row in waiting])
    return [(keys[row["prediction_id"]][0], row["prediction_id"]) for row in waiting]


def adopt_waiting_ground_truth(conn: Connection, *, now: datetime, slos: Sequence[SLO] = ()) -> int:
    """Join waiting ground truth whose prediction has arrived since (housekeeping): the ingest
    paths join the two whichever arrives second; this closes the one gap, a label and its
    prediction committed by concurrent transactions that could not see each other."""
    by_model: dict[str, dict[str, tuple[datetime, str]]] = defaultdict(dict)
    for model, pid, ts, version in w.pending_with_predictions(conn):
        by_model[model][pid] = (ts, version)
    changes = Changes(slos)
    moved = 0
    for model in sorted(by_model):
        waiting = w.take_pending(conn, model, list(by_model[model]))
        if not waiting:
            continue
        keys = by_model[model]
        w.upsert_ground_truth(conn, [{**row, "prediction_ts": keys[row["prediction_id"]][0]} for row in waiting])
        first = {row["prediction_id"]: keys[row["prediction_id"]] for row in waiting}
        # their hours may have been evaluated already: merged in as increments; a classification
        # label's annotations were stored while the prediction was unknown, and the hour's
        # evaluation may have counted them already: that hour is recomputed instead
        changes.first_labels(model, first)
        changes.annotated(model, {row["prediction_id"]: (keys[row["prediction_id"]][0], True)
                                  for row in waiting if row.get("label") is not None})  # fmt: skip
        changes.label_events(conn, model, [(ts, pid) for pid, (ts, _) in first.items()])
        moved += len(waiting)
    changes.apply(conn, now)
    return moved


def _same_label(stored: Any, values: dict[str, Any]) -> bool:
    return all(getattr(stored, k) == values[k] for k in ("label", "boxes", "box_classes", "iscrowd"))


class _Row:
    """A stored-revision stand-in for records applied earlier in the same batch."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


class Changes:
    """What a write transaction changes in the rows every batch of a model shares (lock-order
    steps 4 to 8), collected as it goes and applied at its end by :meth:`apply`."""

    def __init__(self, slos: Sequence[SLO]) -> None:
        self.slos = slos
        #: (model, version) -> [predictions, errors, labelled, first ts, last ts]
        self.versions: dict[tuple[str, str], list[Any]] = {}
        self.ground_truth: Counter[str] = Counter()
        self.dirty: set[tuple[str, datetime]] = set()
        #: model -> (ts, prediction id) of predictions that got their first label
        self.first: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
        #: model -> prediction id -> (ts, whether it had annotations before) of stored predictions
        #: that got annotations
        self.annotations: dict[str, dict[str, tuple[datetime, bool]]] = defaultdict(dict)
        self.slo: Tally = {}

    def _version(self, model: str, version: str, ts: datetime) -> list[Any]:
        c = self.versions.get((model, version))
        if c is None:
            c = self.versions[(model, version)] = [0, 0, 0, ts, ts]
        else:
            c[3], c[4] = min(c[3], ts), max(c[4], ts)
        return c

    def predictions(self, new: Sequence[Prediction]) -> None:
        for p in new:
            c = self._version(p.model, p.model_version, p.ts)
            c[0] += 1
            c[1] += p.status != 0
        self.dirty.update((p.model, hour_floor(p.ts)) for p in new)

    def labelled(self, model: str, keys: Iterable[tuple[datetime, str]]) -> None:
        """Predictions (ts, version) that got their first label."""
        for ts, version in keys:
            self._version(model, version, ts)[2] += 1

    def first_labels(self, model: str, first: dict[str, tuple[datetime, str]]) -> None:
        """First labels of stored predictions (id -> (ts, version)): counted, and merged into
        their evaluated hours as increments."""
        self.labelled(model, first.values())
        self.first[model] += [(ts, pid) for pid, (ts, _) in first.items()]

    def annotated(self, model: str, predictions: dict[str, tuple[datetime, bool]]) -> None:
        """Stored predictions that got annotations (id -> (ts, whether they had some before)):
        their hours' agreement changes. :meth:`apply` marks those hours dirty, except where the
        annotations are a prediction's first and come with its first label: the label increment
        brings the new item to its hour, exactly (an item's later annotations change its weight,
        which only a recomputation of the hour gets right)."""
        self.annotations[model].update(predictions)

    def label_events(self, conn: Connection, model: str, keys: Sequence[tuple[datetime, str]]) -> None:
        """Quality events of predictions that got their first label in this transaction (read
        back with it, after it was written)."""
        if not keys or not slos_for(self.slos, model, QUALITY_SLIS):
            return
        spec = model_specs(conn, [model]).get(model)
        if spec is not None:
            self.slo_tally(label_tally(self.slos, spec, read_keys(conn, model, spec.task, keys)))

    def slo_tally(self, tally: Tally) -> None:
        for key, (events, bad) in tally.items():
            counts = self.slo.setdefault(key, [0, 0])
            counts[0] += events
            counts[1] += bad

    def apply(self, conn: Connection, now: datetime) -> None:
        """Write everything collected, in the lock order."""
        pg = conn.dialect.name == "postgresql"
        for model, annotated in sorted(self.annotations.items()):
            first = {pid for _, pid in self.first.get(model, ())}
            self.dirty.update((model, hour_floor(ts)) for pid, (ts, before) in annotated.items() if before or pid not in first)
        # 4. a first label of an hour already evaluated is an increment; one of an hour waiting to be
        # recomputed moves the hour's mark instead (the recompute reads it with the hour's rows)
        for model, keys in sorted(self.first.items()):
            hours = sorted({hour_floor(ts) for ts, _ in keys})
            waiting = w.hours_awaiting_recompute(conn, model, hours) | {h for m, h in self.dirty if m == model}
            self.dirty.update((model, h) for h in waiting if h in hours)
            w.log_increments(conn, model, [(ts, pid) for ts, pid in keys if hour_floor(ts) not in waiting], now)
        # 5, 6, 7, 8
        w.add_ground_truth_counts(conn, dict(self.ground_truth))
        w.add_version_counts(conn, [
            {"model": m, "version": v, "predictions": n, "errors": int(e), "labelled": lab, "first_seen": lo, "last_seen": hi}
            for (m, v), (n, e, lab, lo, hi) in self.versions.items()
        ])  # fmt: skip
        w.mark_dirty(conn, self.dirty, now, pg=pg)
        add_events(conn, self.slo, minute_floor(now), pg=pg)
