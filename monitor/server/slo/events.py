"""SLO events: which stored predictions and labels are events of which SLO, counted per minute.

The ingest transactions call :func:`count_predictions` (a batch of *new* predictions, never
duplicates) and :func:`count_labels` (predictions that just got their *first* ground truth) in the
same transaction that stores the data, so an event is counted exactly once whichever replica
stored it, and a rolled-back batch counts nothing. Events go to ``slo_events`` at the minute they
became known (``now``), not at the prediction's own time: the exported counters must grow when
the event is counted, and the notifier reads the same minutes Prometheus' ``increase()`` sees.

==============  ============================================  ===========================================
SLI             an event                                      bad when
==============  ============================================  ===========================================
availability    a stored prediction                           its status is error
latency         a stored prediction with status ok and a      latency > threshold (seconds)
                latency
accuracy        a prediction (status ok) gets its first label  predicted class != label
precision (c)   ... a prediction of class c gets its label    label != c
recall (c)      ... a label of class c arrives                 predicted class != c
detection       each detection of class c with score >=        it matches no ground-truth box (IoU >= 0.5,
precision (c)   the model's operating threshold                greedy by score, COCO's match)
detection       each non-crowd ground-truth box of class c     no detection of class c with score >= the
recall (c)                                                     operating threshold matches it
==============  ============================================  ===========================================

Latency counts successful predictions only: a fast error is the availability SLO's business and
must not make latency look good. A changed label (a later revision) does not recount: the event
was counted when the first label arrived. An SLO with a cohort counts only predictions whose
stored cohort has every listed value (after the PII policy: a hashed field compares hashed).
Detection matching is the metrics engine's own (:func:`monitor.metrics.detection_state`), cut at
the operating threshold exactly as ``detection_metrics`` does (a match to a crowd region counts
neither way). Time-slice SLIs (ece, drift, map) are counted by the ``slo`` job
(:mod:`monitor.server.slo.slices`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import numpy as np
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.services.decode import StoredImage, image_key, images_detection_state
from monitor.server.slo.spec import SLO
from monitor.server.store import tables as t
from monitor.server.store.reads import Rows
from monitor.wire import STATUS_OK, ModelSpec, Prediction

#: SLIs counted when a prediction is stored, and when its first label arrives.
REQUEST_SLIS: Final = frozenset({"latency", "availability"})
QUALITY_SLIS: Final = frozenset({"accuracy", "precision", "recall"})

#: (model, slo, version) -> [events, bad]
Tally = dict[tuple[str, str, str], list[int]]


def minute_floor(ts: datetime) -> datetime:
    """The start of the minute holding ``ts`` (the key of a ``slo_events`` row)."""
    return ts.replace(second=0, microsecond=0)


def cohort_value_text(value: Any) -> str:
    """A cohort value as the evaluation slices spell it (``True`` -> ``true``, 3 -> ``3``)."""
    return str(value).lower() if isinstance(value, bool) else str(value)


def cohort_matches(slo: SLO, cohort: Mapping[str, Any] | None) -> bool:
    """Whether a prediction with this stored cohort belongs to the SLO's cohort filter."""
    if not slo.cohort:
        return True
    if not cohort:
        return False
    return all(key in cohort and cohort_value_text(cohort[key]) == value for key, value in slo.cohort)


def slos_for(slos: Iterable[SLO], model: str, slis: frozenset[str]) -> list[SLO]:
    """The SLOs of ``model`` whose SLI is one of ``slis`` (a model has a handful at most)."""
    return [s for s in slos if s.model == model and s.sli in slis]


# --------------------------------------------------------------------------------------------
# the rules (pure)


def prediction_tally(slos: Sequence[SLO], preds: Iterable[Prediction]) -> Tally:
    """Latency and availability events of newly stored predictions."""
    by_model: dict[str, list[SLO]] = defaultdict(list)
    for slo in slos:
        if slo.sli in REQUEST_SLIS:
            by_model[slo.model].append(slo)
    batch: dict[str, list[Prediction]] = defaultdict(list)
    for p in preds:
        if p.model in by_model:
            batch[p.model].append(p)
    tally: Tally = {}
    for model, group in batch.items():
        for slo in by_model[model]:
            members = [p for p in group if cohort_matches(slo, p.cohort)] if slo.cohort else group
            # (version, bad) -> events, counted in C by Counter: a 10 000-record batch stays cheap
            if slo.sli == "availability":
                outcomes = Counter((p.model_version, p.status != STATUS_OK) for p in members)
            else:
                assert slo.threshold is not None
                threshold = slo.threshold
                outcomes = Counter(
                    (p.model_version, p.latency_ms / 1e3 > threshold)
                    for p in members
                    if p.status == STATUS_OK and p.latency_ms is not None  # errors and no latency: not events
                )
            for (version, bad), n in outcomes.items():
                counts = tally.setdefault((model, slo.name, version), [0, 0])
                counts[0] += n
                counts[1] += n if bad else 0
    return tally


def label_tally(slos: Sequence[SLO], spec: ModelSpec, rows: Rows) -> Tally:
    """Accuracy, precision and recall events of predictions that just got their first label.

    ``rows`` are the predictions with their ground truth (:func:`monitor.server.store.reads.read_keys`);
    unlabelled rows and predictions with status error are not events (as in the metrics engine).
    """
    quality = slos_for(slos, spec.name, QUALITY_SLIS)
    if not quality or len(rows) == 0:
        return {}
    usable = rows.labelled & (rows.status == STATUS_OK)
    if not usable.any():
        return {}
    tally: Tally = {}
    versions = np.asarray(rows.version, dtype=object)
    for slo in quality:
        member = usable & _cohort_mask(slo, rows.cohort)
        if not member.any():
            continue
        if spec.task == "classification":
            events, bad = _classification_events(slo, spec, rows, member)
        else:
            events, bad = _detection_events(slo, spec, rows, member)
        _add(tally, spec.name, slo.name, versions, events, bad)
    return tally


def _cohort_mask(slo: SLO, cohorts: Sequence[Mapping[str, Any] | None]) -> np.ndarray:
    if not slo.cohort:
        return np.ones(len(cohorts), dtype=bool)
    return np.fromiter((cohort_matches(slo, c) for c in cohorts), dtype=bool, count=len(cohorts))


def _add(tally: Tally, model: str, slo: str, versions: np.ndarray, events: np.ndarray, bad: np.ndarray) -> None:
    """Sum per-row event and bad counts by version into ``tally``."""
    for version in np.unique(versions[events > 0]):
        sel = versions == version
        n, b = int(events[sel].sum()), int(bad[sel].sum())
        if n:
            counts = tally.setdefault((model, slo, str(version)), [0, 0])
            counts[0] += n
            counts[1] += b


def _class_index(slo: SLO, spec: ModelSpec) -> int | None:
    return None if slo.class_name is None else spec.class_index.get(slo.class_name)


def _classification_events(slo: SLO, spec: ModelSpec, rows: Rows, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many events (0 or 1) and how many of them bad."""
    predicted, label = rows.predicted_class, rows.label
    if slo.sli == "accuracy":
        events = member
        bad = member & (predicted != label)
    else:
        c = _class_index(slo, spec)
        if c is None:  # a class the model does not have: nothing can be an event
            return np.zeros(len(rows), np.int64), np.zeros(len(rows), np.int64)
        if slo.sli == "precision":
            events = member & (predicted == c)
            bad = events & (label != c)
        else:
            events = member & (label == c)
            bad = events & (predicted != c)
    return events.astype(np.int64), bad.astype(np.int64)


def _detection_events(slo: SLO, spec: ModelSpec, rows: Rows, member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row (image): detection precision / recall events of class c and how many are bad."""
    n = len(rows)
    events = np.zeros(n, np.int64)
    bad = np.zeros(n, np.int64)
    c = _class_index(slo, spec)
    if c is None:
        return events, bad
    idx = np.flatnonzero(member)
    keys = np.array([image_key(rows.prediction_id[i]) for i in idx], dtype=np.int64)
    row_of = {int(k): int(i) for k, i in zip(keys, idx, strict=True)}
    if slo.sli == "recall":  # every non-crowd ground-truth box of class c is an event
        for i in idx:
            gc = np.frombuffer(rows.gt_classes[i] or b"", "<i4")
            crowd = rows.gt_crowd[i]
            gk = np.frombuffer(crowd, "u1") if crowd else np.zeros(len(gc), np.uint8)
            events[i] = int(np.count_nonzero((gc == c) & (gk == 0)))
    state = images_detection_state([
        StoredImage(rows.prediction_id[i], rows.boxes[i], rows.box_classes[i], rows.box_scores[i],
                    rows.gt_boxes[i], rows.gt_classes[i], rows.gt_crowd[i])
        for i in idx
    ])  # fmt: skip
    # The operating point of detection_metrics: score >= threshold, matched at IoU 0.50 over the
    # whole area range (flag bit 0); a detection matched to a crowd region (ignored) counts neither way.
    of_class = (state.det_class == c) & (state.score >= spec.operating_threshold) & ((state.ignored & 1) == 0)
    matched = of_class & ((state.tp & 1) == 1)
    det_rows = np.array([row_of[int(k)] for k in state.image], dtype=np.int64)
    if slo.sli == "precision":
        np.add.at(events, det_rows[of_class], 1)
        np.add.at(bad, det_rows[of_class & ~matched], 1)
    else:  # each match of a class-c detection is one detected class-c box
        good = np.zeros(n, np.int64)
        np.add.at(good, det_rows[matched], 1)
        bad = events - good
    return events, bad


# --------------------------------------------------------------------------------------------
# the writes (called inside the ingest transactions)


def add_events(conn: Connection, tally: Tally, minute: datetime, *, pg: bool) -> None:
    """Add ``tally`` to the per-minute counts: one upsert per (slo, version), rows sorted so that
    concurrent batches take the row locks in the same order (no deadlock)."""
    rows = [
        {"model": m, "slo": s, "version": v, "minute": minute, "events": n, "bad": b}
        for (m, s, v), (n, b) in sorted(tally.items())
        if n
    ]
    if not rows:
        return
    e = t.slo_events
    stmt = (pg_insert if pg else sqlite_insert)(e)
    stmt = stmt.on_conflict_do_update(
        index_elements=[e.c.model, e.c.slo, e.c.version, e.c.minute],
        set_={"events": e.c.events + stmt.excluded.events, "bad": e.c.bad + stmt.excluded.bad},
    )
    conn.execute(stmt, rows)


def count_predictions(
    conn: Connection, slos: Sequence[SLO], new: Sequence[Prediction], now: datetime, *, pg: bool
) -> None:
    """Count the latency and availability events of predictions this transaction stored."""
    if not new or not any(s.sli in REQUEST_SLIS for s in slos):
        return  # the common case costs nothing per record
    add_events(conn, prediction_tally(slos, new), minute_floor(now), pg=pg)


def count_labels(
    conn: Connection,
    slos: Sequence[SLO],
    model: str,
    keys: Sequence[tuple[datetime, str]],
    now: datetime,
    *,
    pg: bool,
) -> None:
    """Count the quality events of predictions ``(ts, prediction_id)`` of ``model`` that got their
    first ground truth in this transaction (read back with it, after it was written)."""
    if not keys or not slos_for(slos, model, QUALITY_SLIS):
        return
    from monitor.server.services.models import model_specs
    from monitor.server.store.reads import read_keys

    spec = model_specs(conn, [model]).get(model)
    if spec is None:
        return
    rows = read_keys(conn, model, spec.task, keys)
    add_events(conn, label_tally(slos, spec, rows), minute_floor(now), pg=pg)
