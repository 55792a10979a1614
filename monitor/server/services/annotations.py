"""Annotations: every annotator's label of a prediction, and the one label the quality metrics use.

A classification ground-truth record is an *annotation*: the label of one annotator (``""`` when
the record names none), of which the newest revision per annotator is kept in ``label_annotations``
(an older or identical revision is a duplicate, as it is for one label). The model's
``label_policy`` derives the *effective* label from a prediction's annotations, and that label
goes through the ground-truth write (monitor.server.store.writes) like any label:

===========  ========================================================================================
policy       the effective label of a prediction
===========  ========================================================================================
``newest``   the newest revision of any annotator (the default, and what cvmon did before annotators)
``majority`` an audit when there is one (the newest); else the most frequent label, and between
             labels as frequent the one with the newest annotation
``exclude``  an audit when there is one (the newest); else the label when all annotators agree, and
             none while they disagree: a disputed prediction leaves the quality metrics until its
             annotators agree or an audit arrives
===========  ========================================================================================

Under ``majority`` and ``exclude`` the effective label is timed by the newest of the
prediction's annotations (its ``labelled_at``, and so its label latency). Detection labels are
not annotations: whatever the annotator, their newest revision wins.

Every stored annotation of a known prediction changes its hour's annotator agreement
(``eval_states.agreement``): the ingest service's ``Changes`` marks the hour for recomputation,
except for a prediction's first annotations when they give it its first label, which reach the
hour as a label increment (their item is new to the hour's state, so adding it is exact).

A label the ``exclude`` policy takes back is deleted from ``ground_truth`` (its hour is marked
for recomputation) or ``ground_truth_pending`` and noted in ``withdrawn_labels``; the counters
of first labels (labelled predictions, SLO quality events) keep their count, so when the label
returns it is not counted again. A change of policy applies to the labels that arrive after it.

Functions here take the caller's ``Connection`` and never commit; the ingest service
(:func:`monitor.server.services.ingest.store_ground_truth`) calls them in its lock order.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.services.windows import hour_floor
from monitor.server.store import tables as t
from monitor.server.store.reads import annotation_rows, by_keys
from monitor.server.store.writes import prediction_keys, upsert_ground_truth
from monitor.wire import GroundTruth

if TYPE_CHECKING:
    from monitor.server.services.ingest import Changes

POLICIES: Final = ("newest", "majority", "exclude")
DEFAULT_POLICY: Final = "newest"


@dataclass(frozen=True, slots=True)
class Annotation:
    """One annotator's current label of a prediction."""

    annotator: str
    label: int
    labelled_at: datetime
    audit: bool = False


def effective_label(annotations: Sequence[Annotation], policy: str) -> tuple[int, datetime] | None:
    """The label (and its time) ``policy`` gives a prediction with these annotations; None when
    there is none (no annotations, or ``exclude`` and the annotators disagree)."""
    if policy not in POLICIES:
        raise ValueError(f"label policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    if not annotations:
        return None
    at = max(a.labelled_at for a in annotations)

    def newest(among: Sequence[Annotation]) -> Annotation:  # annotator names break exact ties
        return max(among, key=lambda a: (a.labelled_at, a.annotator))

    if policy == "newest":
        return newest(annotations).label, at
    audits = [a for a in annotations if a.audit]
    if audits:
        return newest(audits).label, at
    votes = Counter(a.label for a in annotations)
    if policy == "exclude":
        return (annotations[0].label, at) if len(votes) == 1 else None
    top = max(votes.values())
    return newest([a for a in annotations if votes[a.label] == top]).label, at


def model_policies(conn: Connection, models: Sequence[str]) -> dict[str, str]:
    """The label policy of each of ``models`` (registered ones)."""
    m = t.models.c
    rows = conn.execute(sa.select(m.model, m.label_policy).where(m.model.in_(sorted(set(models)))))
    return {model: policy for model, policy in rows}


def lock_predictions(conn: Connection, keys: Sequence[tuple[str, str]]) -> None:
    """PostgreSQL: one writer of annotations at a time per prediction (a policy reads all of a
    prediction's annotations), taken in (model, id) order before the transaction writes anything
    (step 0 of the lock order in :mod:`monitor.server.services.ingest`)."""
    if conn.dialect.name != "postgresql" or not keys:
        return
    ordered = sorted(set(keys))
    conn.execute(
        sa.text(
            "SELECT pg_advisory_xact_lock(hashtext('annotations:' || m), hashtext(i)) "
            "FROM unnest(CAST(:models AS text[]), CAST(:ids AS text[])) AS k(m, i)"
        ),
        {"models": [m for m, _ in ordered], "ids": [i for _, i in ordered]},
    )


def annotate(
    conn: Connection, model: str, group: list[GroundTruth], policy: str, *, now: datetime, changes: Changes
) -> tuple[list[GroundTruth], int]:
    """Store the classification labels of ``group`` (oldest first) as annotations; returns the
    labels the ground-truth write is to store (the effective labels ``policy`` derives, or the
    new revisions themselves under ``newest``) and how many records were new revisions.

    Takes back the labels ``exclude`` disputes and gives back those it settles, in
    ``ground_truth``/``ground_truth_pending``; dirty marks and counter corrections go to
    ``changes``, which the caller applies at the end of its transaction."""
    ids = sorted({g.prediction_id for g in group})
    current = _annotations(conn, model, ids)
    had_annotations = {pid for pid, _ in current}
    changed: dict[tuple[str, str], dict[str, Any]] = {}
    new: list[GroundTruth] = []
    for g in group:  # oldest first: the newest revision of an annotator wins inside the batch too
        key = (g.prediction_id, g.annotator or "")
        stored = current.get(key)
        if stored is not None and (
            g.labelled_at < stored.labelled_at or (g.label, g.audit) == (stored.label, stored.audit)
        ):
            continue  # a retry, or a revision older than the one kept
        assert g.label is not None
        current[key] = Annotation(key[1], g.label, g.labelled_at, g.audit)
        changed[key] = {"model": model, "prediction_id": key[0], "annotator": key[1], "labelled_at": g.labelled_at,
                        "received_at": now, "label": g.label, "audit": g.audit}  # fmt: skip
        new.append(g)
    if not changed:
        return [], 0
    _upsert(conn, list(changed.values()), pg=conn.dialect.name == "postgresql")
    touched = sorted({pid for pid, _ in changed})
    # agreement counts every annotation: the hours of these predictions change (Changes.apply)
    known = prediction_keys(conn, model, touched)
    changes.annotated(model, {pid: (known[pid][0], pid in had_annotations) for pid in touched if pid in known})
    withdrawn = _withdrawn(conn, model, touched)
    if policy == DEFAULT_POLICY:
        # today's single-label path, revision by revision (ties resolve as they always did)
        labels = [g for g in new if g.prediction_id not in withdrawn]
        derive = [pid for pid in touched if pid in withdrawn]
    else:
        labels, derive = [], touched
    by_prediction: dict[str, list[Annotation]] = defaultdict(list)
    for (pid, _), annotation in current.items():
        by_prediction[pid].append(annotation)
    disputed: list[str] = []
    restore: dict[str, tuple[int, datetime]] = {}
    for pid in derive:
        effective = effective_label(by_prediction[pid], policy)
        if effective is None:
            disputed.append(pid)
        elif pid in withdrawn:
            restore[pid] = effective
        else:
            labels.append(GroundTruth(pid, model, effective[1], label=effective[0]))
    if disputed:
        _withdraw(conn, model, [pid for pid in disputed if pid not in withdrawn], now=now, changes=changes)
    if restore:
        labels += _restore(conn, model, restore, {pid: withdrawn[pid] for pid in restore}, now=now, changes=changes)
    return sorted(labels, key=lambda g: g.labelled_at), len(new)


def _annotations(conn: Connection, model: str, ids: list[str]) -> dict[tuple[str, str], Annotation]:
    rows = annotation_rows(conn, model, ids)
    return {
        (r.prediction_id, r.annotator): Annotation(r.annotator, r.label, r.labelled_at, bool(r.audit)) for r in rows
    }


def _upsert(conn: Connection, rows: list[dict[str, Any]], *, pg: bool) -> None:
    table = t.label_annotations
    stmt = (pg_insert if pg else sqlite_insert)(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.model, table.c.prediction_id, table.c.annotator],
        set_={c: stmt.excluded[c] for c in ("labelled_at", "received_at", "label", "audit")},
        where=stmt.excluded.labelled_at >= table.c.labelled_at,
    )
    conn.execute(stmt, sorted(rows, key=lambda r: (r["prediction_id"], r["annotator"])))


def _withdrawn(conn: Connection, model: str, ids: list[str]) -> dict[str, bool]:
    """Predictions among ``ids`` whose label is withdrawn -> whether its first label was counted."""
    w = t.withdrawn_labels.c
    rows = conn.execute(sa.select(w.prediction_id, w.counted).where(w.model == model, w.prediction_id.in_(ids)))
    return {pid: bool(counted) for pid, counted in rows}


def _withdraw(conn: Connection, model: str, ids: list[str], *, now: datetime, changes: Changes) -> None:
    """Take the effective labels of ``ids`` back from the quality metrics (``exclude``)."""
    if not ids:
        return
    keys = prediction_keys(conn, model, ids)
    g, pend = t.ground_truth, t.ground_truth_pending.c
    labelled: list[str] = []
    if keys:
        query = sa.select(g.c.prediction_id)
        labelled = list(conn.execute(by_keys(conn, query, g, g.c.prediction_ts, model, sorted((ts, pid) for pid, (ts, _) in keys.items()))).scalars())
    waiting = set(conn.execute(sa.select(pend.prediction_id).where(pend.model == model, pend.prediction_id.in_(ids))).scalars())
    counted = set(labelled)
    rows = [{"model": model, "prediction_id": pid, "counted": pid in counted, "withdrawn_at": now}
            for pid in sorted(counted | waiting)]  # fmt: skip
    if rows:
        conn.execute(sa.insert(t.withdrawn_labels), rows)
    if waiting:
        conn.execute(sa.delete(t.ground_truth_pending).where(pend.model == model, pend.prediction_id.in_(sorted(waiting))))
    if labelled:
        conn.execute(
            sa.delete(g).where(
                g.c.model == model, g.c.prediction_ts == sa.bindparam("ts"), g.c.prediction_id == sa.bindparam("pid")
            ),
            [{"ts": keys[pid][0], "pid": pid} for pid in sorted(labelled)],
        )
        changes.dirty.update((model, hour_floor(keys[pid][0])) for pid in labelled)


def _restore(
    conn: Connection,
    model: str,
    labels: dict[str, tuple[int, datetime]],
    counted: dict[str, bool],
    *,
    now: datetime,
    changes: Changes,
) -> list[GroundTruth]:
    """Give withdrawn predictions their label back. A counted one goes straight into
    ``ground_truth`` (its hour recomputed); the others are returned for the ground-truth write,
    which counts them as first labels, and the model's first-label count is given back the one
    they had when they waited."""
    w = t.withdrawn_labels.c
    conn.execute(sa.delete(t.withdrawn_labels).where(w.model == model, w.prediction_id.in_(sorted(labels))))
    recount = [pid for pid in labels if not counted[pid]]
    direct = sorted(pid for pid in labels if counted[pid])
    keys = prediction_keys(conn, model, direct) if direct else {}
    rows = [
        {"model": model, "prediction_id": pid, "prediction_ts": keys[pid][0], "labelled_at": labels[pid][1],
         "received_at": now, "label": labels[pid][0], "boxes": None, "box_classes": None, "iscrowd": None}
        for pid in direct if pid in keys  # a prediction gone with retention takes its label along
    ]  # fmt: skip
    if rows:
        upsert_ground_truth(conn, rows)
        changes.dirty.update((model, hour_floor(keys[pid][0])) for pid in direct if pid in keys)
    changes.ground_truth[model] -= len(recount)
    return [GroundTruth(pid, model, labels[pid][1], label=labels[pid][0]) for pid in sorted(recount)]
