"""Annotators and label policies, on PostgreSQL and SQLite: every annotator's label is kept, and
the model's policy decides the label the quality metrics use, exactly as docs/quality.md says.

The records go through the ingest service; the metrics are the evaluate job's, read from the
metric history and compared with scikit-learn on the labels the policy should have chosen."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from monitor.server.jobs import run_once
from monitor.server.services.annotations import Annotation, effective_label
from monitor.server.services.ingest import (
    CohortPolicy,
    adopt_waiting_ground_truth,
    ingest_ground_truth,
    ingest_predictions,
)
from monitor.server.services.models import model_info, register_model
from monitor.server.settings import Settings
from monitor.server.slo.spec import load_slos
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager

CLASSES = ["cat", "dog", "fox"]
NOW = datetime(2026, 11, 20, 10, 40, tzinfo=UTC)
HOUR = NOW.replace(minute=0)
#: the class each prediction predicts (its probabilities' argmax)
PREDICTED = {"p0": 0, "p1": 0, "p2": 1, "p3": 1, "p4": 0, "p5": 2, "p6": 2}


def at(minutes: int) -> str:
    return (HOUR - timedelta(days=1) + timedelta(minutes=minutes)).isoformat()


#: (prediction, annotator, label, labelled at (minutes), audit)
ANNOTATIONS = [
    ("p0", "alice", "cat", 1, False),  # one annotator
    ("p1", "alice", "cat", 1, False),  # two who agree
    ("p1", "bob", "cat", 2, False),
    ("p2", "alice", "cat", 1, False),  # a tie: majority takes the newest (bob's dog)
    ("p2", "bob", "dog", 3, False),
    ("p3", "alice", "cat", 9, False),  # 2 dogs against the newest cat
    ("p3", "bob", "dog", 2, False),
    ("p3", "carol", "dog", 3, False),
    ("p4", "alice", "dog", 5, False),  # disagreement settled by an (older) audit
    ("p4", "bob", "fox", 6, False),
    ("p4", "lead", "cat", 4, True),
    ("p5", None, "fox", 1, False),  # a record without annotator, as before annotators existed
]
#: the label each policy gives each prediction (docs/quality.md); p6 has none
EXPECTED = {
    "newest": {"p0": 0, "p1": 0, "p2": 1, "p3": 0, "p4": 2, "p5": 2},
    "majority": {"p0": 0, "p1": 0, "p2": 1, "p3": 1, "p4": 0, "p5": 2},
    "exclude": {"p0": 0, "p1": 0, "p4": 0, "p5": 2},
}


def probabilities(cls: int) -> list[float]:
    p = [0.1, 0.1, 0.1]
    p[cls] = 0.8
    return p


def predictions(model: str) -> list[dict[str, Any]]:
    return [{"prediction_id": pid, "model": model, "model_version": "v1", "timestamp": (HOUR + timedelta(minutes=i)).isoformat(),
             "probabilities": probabilities(cls), "latency_ms": 5.0} for i, (pid, cls) in enumerate(PREDICTED.items())]  # fmt: skip


def labels(model: str, rows=ANNOTATIONS) -> list[dict[str, Any]]:
    out = []
    for pid, who, label, minutes, audit in rows:
        rec: dict[str, Any] = {"prediction_id": pid, "model": model, "label": label, "timestamp": at(minutes)}
        if who is not None:
            rec["annotator"] = who
        if audit:
            rec["audit"] = True
        out.append(rec)
    return out


def register(engine: Any, model: str, policy: str) -> None:
    with write_transaction(engine) as conn:
        register_model(conn, model, "classification", CLASSES, 0.5, now=NOW, label_policy=policy)


def put_predictions(engine: Any, records: list[dict], **kw: Any) -> None:
    result = ingest_predictions(
        engine, records, now=NOW, partitions=PartitionManager(engine), policy=CohortPolicy(Settings()), **kw
    )
    assert not result.rejected, result.rejected


def evaluate(db: Any, model: str) -> tuple[float | None, int]:
    """Run the evaluate job; the accuracy of v1 over the current day and its sample count."""
    settings = Settings(database_url=db.url, scheduler=False, cohort_keys=())
    (outcome,) = run_once(db.engine, settings, clock=lambda: NOW, models=[model], jobs=["evaluate"])
    assert outcome.status == "ok", outcome.detail
    m = t.metric_latest.c
    with db.engine.connect() as conn:
        where = (m.model == model, m.window == "1d", m.version == "v1", m.cohort_key == "", m.metric == "accuracy")
        row = conn.execute(sa.select(m.value, m.sample_count).where(*where)).one_or_none()
    return (None, 0) if row is None else (row.value, row.sample_count)


def stored_labels(engine: Any, model: str) -> dict[str, int]:
    g = t.ground_truth.c
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(g.prediction_id, g.label).where(g.model == model)).all())


def expected_accuracy(effective: dict[str, int]) -> float:
    from sklearn.metrics import accuracy_score

    ids = sorted(effective)
    return float(accuracy_score([effective[p] for p in ids], [PREDICTED[p] for p in ids]))


@pytest.mark.parametrize("policy", ["newest", "majority", "exclude"])
@pytest.mark.parametrize("labels_first", [False, True], ids=["labels-after", "labels-before"])
def test_the_policy_decides_the_label_the_quality_metrics_use(db, model_name, policy, labels_first):
    register(db.engine, model_name, policy)
    records = labels(model_name)
    if labels_first:  # the labels wait for their predictions, then join them
        result = ingest_ground_truth(db.engine, records, now=NOW)
        put_predictions(db.engine, predictions(model_name))
    else:
        put_predictions(db.engine, predictions(model_name))
        result = ingest_ground_truth(db.engine, records, now=NOW)
    assert (result.accepted, result.duplicates, result.rejected) == (len(ANNOTATIONS), 0, [])
    want = EXPECTED[policy]
    assert stored_labels(db.engine, model_name) == want
    accuracy, n = evaluate(db, model_name)
    assert n == len(want) and accuracy == pytest.approx(expected_accuracy(want), abs=1e-12)
    # every annotation is kept, whatever the policy
    a = t.label_annotations.c
    with db.engine.connect() as conn:
        kept = conn.execute(sa.select(sa.func.count()).where(a.model == model_name)).scalar_one()
    assert kept == len(ANNOTATIONS)
    # a retried batch changes nothing
    again = ingest_ground_truth(db.engine, records, now=NOW + timedelta(minutes=5))
    assert (again.accepted, again.duplicates) == (0, len(ANNOTATIONS))
    assert stored_labels(db.engine, model_name) == want


def test_annotations_arriving_one_by_one_give_the_same_labels(db, model_name):
    """Each policy's label does not depend on how annotations are batched or ordered."""
    register(db.engine, model_name, "majority")
    put_predictions(db.engine, predictions(model_name))
    for rec in reversed(labels(model_name)):
        assert ingest_ground_truth(db.engine, [rec], now=NOW).accepted == 1
    assert stored_labels(db.engine, model_name) == EXPECTED["majority"]


def test_exclude_takes_a_disputed_label_back_and_returns_it_without_counting_twice(db, model_name):
    slos = load_slos(f"slos:\n  - {{name: acc, model: {model_name}, sli: accuracy, objective: 0.99, window: 30d}}\n")
    register(db.engine, model_name, "exclude")
    put_predictions(db.engine, predictions(model_name), slos=slos)

    def state() -> tuple[dict[str, int], int, int, tuple[int, int]]:
        e = t.slo_events.c
        with db.engine.connect() as conn:
            info = model_info(conn, model_name)
            events = conn.execute(
                sa.select(sa.func.sum(e.events), sa.func.sum(e.bad)).where(e.model == model_name, e.slo == "acc")
            ).one()
        assert info is not None
        return (
            stored_labels(db.engine, model_name),
            info.labelled,
            info.ground_truth,
            (int(events[0] or 0), int(events[1] or 0)),
        )

    def post(*rows: tuple[str, str, str, int, bool], minutes_later: int = 0) -> None:
        assert not ingest_ground_truth(
            db.engine, labels(model_name, rows), now=NOW + timedelta(minutes=minutes_later), slos=slos
        ).rejected

    post(("p2", "alice", "dog", 1, False))
    assert evaluate(db, model_name) == (1.0, 1)  # p2 predicted dog
    assert state() == ({"p2": 1}, 1, 1, (1, 0))

    post(("p2", "bob", "cat", 2, False), minutes_later=1)  # disputed: out of the metrics
    assert evaluate(db, model_name) == (None, 0)
    # the first label stays counted (labelled predictions and SLO events never go back)
    assert state() == ({}, 1, 1, (1, 0))

    post(("p2", "lead", "cat", 3, True), minutes_later=2)  # an audit settles it: cat
    assert evaluate(db, model_name) == (0.0, 1)
    assert state() == ({"p2": 0}, 1, 1, (1, 0))  # back, and not counted again

    post(("p2", "carol", "fox", 4, False), minutes_later=3)  # the audit still decides
    assert state()[0] == {"p2": 0}


def test_exclude_before_the_prediction_arrives(db, model_name):
    """A waiting label taken back and returned: counted once, when it meets its prediction."""
    register(db.engine, model_name, "exclude")
    rows = [("p6", "alice", "fox", 1, False), ("p6", "bob", "dog", 2, False)]
    assert ingest_ground_truth(db.engine, labels(model_name, rows[:1]), now=NOW).accepted == 1
    assert ingest_ground_truth(db.engine, labels(model_name, rows[1:]), now=NOW).accepted == 1
    g = t.ground_truth_pending.c
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(g.model == model_name)).scalar_one() == 0
    put_predictions(db.engine, predictions(model_name))  # nothing waits: p6 stays unlabelled
    assert stored_labels(db.engine, model_name) == {}
    # bob corrects himself: they agree on fox
    assert ingest_ground_truth(db.engine, labels(model_name, [("p6", "bob", "fox", 5, False)]), now=NOW).accepted == 1
    assert stored_labels(db.engine, model_name) == {"p6": 2}
    assert evaluate(db, model_name) == (1.0, 1)
    with db.engine.connect() as conn:
        info = model_info(conn, model_name)
    assert info is not None and (info.ground_truth, info.labelled) == (1, 1)
    with write_transaction(db.engine) as conn:
        assert adopt_waiting_ground_truth(conn, now=NOW) == 0


def test_detection_labels_ignore_annotators_and_policies_refuse_detection(db, model_name):
    with write_transaction(db.engine) as conn:
        with pytest.raises(ValueError, match="classification models"):
            register_model(conn, model_name, "detection", ["box"], 0.5, now=NOW, label_policy="majority")
        register_model(conn, model_name, "detection", ["box"], 0.5, now=NOW)
    rec = {
        "prediction_id": "d",
        "model": model_name,
        "boxes": [[0, 0, 4, 4]],
        "box_classes": ["box"],
        "annotator": "alice",
    }
    assert ingest_ground_truth(db.engine, [rec], now=NOW).accepted == 1
    assert ingest_ground_truth(db.engine, [{**rec, "annotator": "bob"}], now=NOW).duplicates == 1  # the same boxes
    a = t.label_annotations.c
    with db.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).where(a.model == model_name)).scalar_one() == 0


def test_a_policy_change_keeps_the_stored_one_when_left_out(db, model_name):
    register(db.engine, model_name, "majority")
    with write_transaction(db.engine) as conn:
        register_model(conn, model_name, "classification", [*CLASSES, "owl"], 0.5, now=NOW)
        info = model_info(conn, model_name)
        assert info is not None and info.label_policy == "majority"
        register_model(conn, model_name, "classification", [*CLASSES, "owl"], 0.5, now=NOW, label_policy="newest")
        assert model_info(conn, model_name).label_policy == "newest"  # type: ignore[union-attr]


D = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("annotations", "policy", "expected"),
    [
        pytest.param([("a", 0, 1), ("b", 1, 2)], "newest", 1, id="newest"),
        pytest.param([("a", 0, 1), ("b", 1, 2), ("c", 0, 0)], "majority", 0, id="majority"),
        pytest.param([("a", 0, 3), ("b", 1, 3)], "majority", 1, id="tie-same-time-by-name"),
        pytest.param([("a", 0, 1), ("b", 1, 2)], "exclude", None, id="exclude-disputed"),
        pytest.param([("a", 2, 1), ("b", 2, 2)], "exclude", 2, id="exclude-agreed"),
        pytest.param([("a", 0, 5), ("b", 0, 6), ("audit", 1, 0, True)], "majority", 1, id="audit-wins"),
        pytest.param([("x", 0, 5), ("y", 1, 6, True), ("z", 2, 7, True)], "exclude", 2, id="newest-audit"),
        pytest.param([], "majority", None, id="none"),
    ],
)
def test_effective_label(annotations, policy, expected):
    rows = [Annotation(a[0], a[1], D + timedelta(minutes=a[2]), len(a) > 3 and a[3]) for a in annotations]
    got = effective_label(rows, policy)
    if expected is None:
        assert got is None
    else:
        assert got == (expected, max(r.labelled_at for r in rows))


def test_an_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="newest, majority, exclude"):
        effective_label([], "vote")


def test_annotations_of_labels_joined_by_housekeeping_recompute_their_hour(db, model_name):
    """Labels and annotations committed concurrently with their predictions, unseen by them: the
    hour's evaluation may already count the annotations (it reads them by prediction), so the
    waiting labels that housekeeping joins recompute the hour instead of merging as increments,
    which would count the items twice."""
    register(db.engine, model_name, "newest")
    put_predictions(db.engine, predictions(model_name))
    a = [("p0", "alice", 0), ("p0", "bob", 0), ("p1", "alice", 0), ("p1", "bob", 1)]
    with write_transaction(db.engine) as conn:  # as if stored by a transaction that missed the predictions
        conn.execute(sa.insert(t.label_annotations), [
            {"model": model_name, "prediction_id": pid, "annotator": who, "labelled_at": NOW, "received_at": NOW,
             "label": label, "audit": False} for pid, who, label in a
        ])
        conn.execute(sa.insert(t.ground_truth_pending), [
            {"model": model_name, "prediction_id": pid, "labelled_at": NOW, "received_at": NOW, "label": label}
            for pid, label in (("p0", 0), ("p1", 1))
        ])  # fmt: skip
    assert evaluate(db, model_name) == (None, 0)  # the hour counts the annotations, not yet the labels
    with write_transaction(db.engine) as conn:
        assert adopt_waiting_ground_truth(conn, now=NOW) >= 2
    with db.engine.connect() as conn:
        increments = conn.execute(sa.select(sa.func.count()).where(t.label_increments.c.model == model_name)).scalar_one()
        dirty = conn.execute(sa.select(sa.func.count()).where(t.dirty_hours.c.model == model_name)).scalar_one()
    assert (increments, dirty) == (0, 1)
    assert evaluate(db, model_name) == (0.5, 2)  # p0 (cat) right, p1 (dog) wrong
    m = t.metric_latest.c
    with db.engine.connect() as conn:
        got = dict(conn.execute(
            sa.select(m.metric, m.value).where(m.model == model_name, m.window == "1d", m.cohort_key == "", m["class"] == "",
                                               m.metric.in_(["label_agreement", "disputed_items", "multi_annotated_coverage"]))
        ).all())  # fmt: skip
    # two items, one disputed: agreeing ordered pairs 2 of 4; 2 of 7 predictions multiply annotated
    assert got == {"label_agreement": 0.5, "disputed_items": 1.0, "multi_annotated_coverage": pytest.approx(2 / 7)}


def test_annotations_of_a_batch_are_read_by_primary_key_probes_whatever_the_statistics(pg_engine: Any, model_name: str) -> None:
    """Ground-truth ingest and the evaluation read the annotations of a batch of predictions. On a
    table without statistics yet, an ``IN`` list over the ids was planned through the
    (model, received_at) index, testing every annotation of the model against every id: a
    ground-truth batch cost as much as the model's whole annotation history (minutes per batch
    when bench/console.py loaded 600 000 labels). The read must probe the primary key."""
    from monitor.server.store.reads import annotation_rows

    now = datetime.now(UTC)
    rows = [{"model": model_name, "prediction_id": f"p{i}", "annotator": "a", "label": i % 3, "audit": False,
             "labelled_at": now, "received_at": now} for i in range(20_000)]  # fmt: skip
    statements: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool) -> None:
        statements.append((statement, parameters))

    with pg_engine.begin() as conn:
        conn.execute(sa.insert(t.label_annotations), rows)
        sa.event.listen(conn, "before_cursor_execute", capture)
        found = annotation_rows(conn, model_name, [f"p{i}" for i in range(0, 20_000, 10)])
        sa.event.remove(conn, "before_cursor_execute", capture)
        assert len(found) == 2000 and {r.prediction_id for r in found} == {f"p{i}" for i in range(0, 20_000, 10)}
        (statement, parameters), = statements
        plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
        conn.rollback()
    assert "Index Scan using pk_label_annotations" in plan and "received_at" not in plan, plan
