"""SLO events counted by the ingest transactions, on PostgreSQL and SQLite.

Each test stores records through the ingest service (validation, PII policy, the bulk writers)
and reads ``slo_events`` back: which records are events, which are bad, at which minute, and
that retries, duplicate labels and label revisions never count again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from monitor.metrics import detection_metrics, detection_state
from monitor.server.services.decode import image_key
from monitor.server.services.ingest import (
    CohortPolicy,
    adopt_waiting_ground_truth,
    ingest_ground_truth,
    ingest_predictions,
)
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.slo.spec import SLO, load_slos
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager

NOW = datetime(2026, 11, 20, 10, 15, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def slos(model: str, *lines: str) -> tuple[SLO, ...]:
    """SLOs of ``model`` from one-line YAML mappings (95 % over 30 days unless a line says otherwise)."""
    defaults = "objective: 0.95, window: 30d, "
    body = "".join(f"  - {{model: {model}, {'' if 'objective' in line else defaults}{line}}}\n" for line in lines)
    return load_slos("slos:\n" + body)


def register(engine: Any, model: str, task: str, classes: list[str], threshold: float = 0.5) -> None:
    with write_transaction(engine) as conn:
        register_model(conn, model, task, classes, threshold, now=NOW)


def post_predictions(engine: Any, records: list[dict], slos: tuple[SLO, ...], now: datetime) -> int:
    result = ingest_predictions(
        engine,
        records,
        now=now,
        partitions=PartitionManager(engine),
        policy=CohortPolicy(Settings()),
        slos=slos,
    )
    assert not result.rejected, result.rejected
    return result.accepted


def post_labels(engine: Any, records: list[dict], slos: tuple[SLO, ...], now: datetime) -> int:
    result = ingest_ground_truth(engine, records, now=now, slos=slos)
    assert not result.rejected, result.rejected
    return result.accepted


def counts(engine: Any, model: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(slo, version) -> (events, bad), summed over minutes."""
    e = t.slo_events.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(e.slo, e.version, sa.func.sum(e.events), sa.func.sum(e.bad))
            .where(e.model == model)
            .group_by(e.slo, e.version)
        ).all()
    return {(s, v): (int(n), int(b)) for s, v, n, b in rows}


def minutes(engine: Any, model: str, slo: str) -> dict[datetime, int]:
    e = t.slo_events.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(e.minute, sa.func.sum(e.events)).where(e.model == model, e.slo == slo).group_by(e.minute)
        ).all()
    return {m: int(n) for m, n in rows}


def pred(model: str, pid: str, **fields: Any) -> dict[str, Any]:
    return {
        "prediction_id": pid,
        "model": model,
        "model_version": "v1",
        "timestamp": NOW.isoformat(),
        **fields,
    }


def test_latency_and_availability_count_each_new_prediction_once(db, model_name):
    register(db.engine, model_name, "classification", ["cat", "dog"])
    config = slos(
        model_name,
        "name: lat, sli: latency, threshold: 0.05",
        "name: avail, sli: availability",
        "name: lat-cam3, sli: latency, threshold: 0.05, cohort: {camera: cam-3}",
    )
    ok = {"predicted_class": "cat"}
    batch = [
        pred(model_name, "a", latency_ms=10, cohort={"camera": "cam-1"}, **ok),
        pred(model_name, "b", latency_ms=50, cohort={"camera": "cam-3"}, **ok),  # on the bound: good
        pred(model_name, "c", latency_ms=80, cohort={"camera": "cam-3"}, **ok),
        pred(model_name, "d", cohort={"camera": "cam-3"}, **ok),  # no latency: no latency event
        pred(model_name, "e", latency_ms=5, status="error"),  # an error: bad availability, no latency event
        pred(model_name, "f", latency_ms=120, **{**ok, "model_version": "v2"}),
    ]
    assert post_predictions(db.engine, batch, config, NOW) == 6
    want = {
        ("lat", "v1"): (3, 1), ("lat", "v2"): (1, 1),
        ("avail", "v1"): (5, 1), ("avail", "v2"): (1, 0),
        ("lat-cam3", "v1"): (2, 1),
    }  # fmt: skip
    assert counts(db.engine, model_name) == want

    # a retried batch is all duplicates: nothing counts again
    assert post_predictions(db.engine, batch, config, NOW + MINUTE) == 0
    assert counts(db.engine, model_name) == want
    # a new prediction a minute later goes into that minute's row
    assert post_predictions(db.engine, [pred(model_name, "g", latency_ms=1, **ok)], config, NOW + MINUTE) == 1
    first = NOW.replace(second=0)
    assert minutes(db.engine, model_name, "lat") == {first: 4, first + MINUTE: 1}


def test_quality_events_count_first_labels_only(db, model_name):
    register(db.engine, model_name, "classification", ["cat", "dog", "fox"])
    config = slos(
        model_name,
        "name: acc, sli: accuracy",
        "name: prec-cat, sli: precision, class: cat",
        "name: rec-cat, sli: recall, class: cat",
        "name: acc-cam3, sli: accuracy, cohort: {camera: cam-3}",
        "name: rec-owl, sli: recall, class: owl",  # not a class of the model: never an event
    )
    cam3, cam1 = {"camera": "cam-3"}, {"camera": "cam-1"}
    preds = [
        pred(model_name, "a", predicted_class="cat", cohort=cam3),
        pred(model_name, "b", predicted_class="cat", cohort=cam1),
        pred(model_name, "c", predicted_class="dog", cohort=cam3),
        pred(model_name, "d", predicted_class="dog", cohort=cam1),
        pred(model_name, "e", probabilities=[0.1, 0.1, 0.8]),  # predicted fox by argmax
        pred(model_name, "f", predicted_class="cat", cohort=cam3),
        pred(model_name, "g", status="error"),  # labelled but failed: not an event
    ]
    labels = {"a": "cat", "b": "dog", "c": "cat", "d": "dog", "e": "fox", "f": "cat", "g": "cat"}

    def label(pid: str, value: str | None = None, **extra: Any) -> dict[str, Any]:
        return {"prediction_id": pid, "model": model_name, "label": value or labels[pid], **extra}

    # f's label arrives before its prediction: counted when the prediction joins it
    assert post_labels(db.engine, [label("f")], config, NOW) == 1
    assert counts(db.engine, model_name) == {}
    assert post_predictions(db.engine, preds, config, NOW + MINUTE) == 7
    assert counts(db.engine, model_name) == {
        ("acc", "v1"): (1, 0), ("prec-cat", "v1"): (1, 0), ("rec-cat", "v1"): (1, 0), ("acc-cam3", "v1"): (1, 0),
    }  # fmt: skip
    assert post_labels(db.engine, [label(p) for p in "abcdeg"], config, NOW + 2 * MINUTE) == 6
    want = {
        ("acc", "v1"): (6, 2),  # a b c d e f; b and c wrong
        ("prec-cat", "v1"): (3, 1),  # predicted cat: a b f; b is a dog
        ("rec-cat", "v1"): (3, 1),  # true cats: a c f; c predicted dog
        ("acc-cam3", "v1"): (3, 1),  # a c f
    }
    assert counts(db.engine, model_name) == want
    assert minutes(db.engine, model_name, "acc") == {
        (NOW + MINUTE).replace(second=0): 1,
        (NOW + 2 * MINUTE).replace(second=0): 5,
    }

    # a retried label and a later revision of b's label change nothing
    revised = label("b", "cat", timestamp=(NOW + timedelta(hours=1)).isoformat())
    assert post_labels(db.engine, [label("a"), revised], config, NOW + timedelta(hours=2)) == 1
    assert counts(db.engine, model_name) == want


def test_labels_joined_by_housekeeping_are_counted(db, model_name):
    """A label and its prediction committed concurrently: housekeeping joins and counts them."""
    register(db.engine, model_name, "classification", ["cat", "dog"])
    config = slos(model_name, "name: acc, sli: accuracy")
    assert post_predictions(db.engine, [pred(model_name, "p", predicted_class="cat")], config, NOW) == 1
    with write_transaction(db.engine) as conn:  # as if stored by a transaction that missed the prediction
        conn.execute(sa.insert(t.ground_truth_pending).values(
            model=model_name, prediction_id="p", labelled_at=NOW, received_at=NOW, label=1,
        ))  # fmt: skip
    with write_transaction(db.engine) as conn:  # (other tests' models may have such labels too)
        assert adopt_waiting_ground_truth(conn, now=NOW + MINUTE, slos=config) >= 1
    assert counts(db.engine, model_name) == {("acc", "v1"): (1, 1)}


def _box(x: float, y: float, w: float = 40, h: float = 40) -> list[float]:
    return [x, y, x + w, y + h]


def test_detection_events_by_hand(db, model_name):
    """One image: a person found (IoU 0.9, score 0.9), a person missed, a false person (0.8) and
    a person below the operating threshold (0.3, not an event); a crowd region matched by a
    person detection (counts neither way)."""
    register(db.engine, model_name, "detection", ["car", "person"], threshold=0.4)
    config = slos(
        model_name,
        "name: rec-person, sli: recall, class: person, objective: 0.9, window: 30d, alerting: {alerts: "
        "[{severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 1}]}",
        "name: prec-person, sli: precision, class: person, objective: 0.9, window: 30d, alerting: {alerts: "
        "[{severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 1}]}",
    )
    record = pred(
        model_name, "img",
        boxes=[_box(10, 10, 40, 38), _box(300, 300), _box(500, 500), _box(800, 800, 100, 100)],
        box_classes=["person", "person", "person", "person"],
        box_scores=[0.9, 0.8, 0.3, 0.7],
    )  # fmt: skip
    truth = {
        "prediction_id": "img", "model": model_name,
        "boxes": [_box(10, 10), _box(100, 100), _box(600, 600), _box(790, 790, 200, 200)],
        "box_classes": ["person", "person", "car", "person"], "iscrowd": [0, 0, 0, 1],
    }  # fmt: skip
    assert post_predictions(db.engine, [record], config, NOW) == 1
    assert post_labels(db.engine, [truth], config, NOW) == 1
    assert counts(db.engine, model_name) == {("rec-person", "v1"): (2, 1), ("prec-person", "v1"): (2, 1)}


def test_detection_events_match_the_metrics_engine(db, model_name):
    """Random images: per-class events equal the operating point of ``detection_metrics``."""
    rng = np.random.default_rng(11)
    classes = ["car", "person", "bike"]
    register(db.engine, model_name, "detection", classes, threshold=0.4)
    alerting = "alerting: {alerts: [{severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 1}]}"
    config = slos(
        model_name,
        *(
            f"name: {k}-{c}, sli: {k}, class: {c}, objective: 0.9, window: 30d, {alerting}"
            for c in classes
            for k in ("precision", "recall")
        ),
    )
    preds, truths = [], []
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("gi", "gb", "gc", "gk", "di", "db", "dc", "ds")}
    for i in range(60):
        n = int(rng.integers(0, 5))
        xy = rng.uniform(0, 400, size=(n, 2))
        gb = np.hstack([xy, xy + rng.uniform(20, 80, size=(n, 2))]).astype(np.float32)
        gc = rng.integers(0, 3, n)
        crowd = (rng.random(n) < 0.1).astype(int)
        keep = rng.random(n) < 0.8
        db_ = np.vstack(
            [gb[keep] + rng.normal(0, 4, size=(int(keep.sum()), 4)), np.hstack([xy[:1] + 200, xy[:1] + 240])]
        )
        db_[:, 2:] = np.maximum(db_[:, 2:], db_[:, :2] + 1)
        db_ = db_.astype(np.float32)
        dc = np.concatenate([gc[keep], rng.integers(0, 3, len(db_) - int(keep.sum()))])
        ds = rng.uniform(0.05, 1, size=len(db_)).astype(np.float32)
        pid = f"img-{i}"
        preds.append(
            pred(
                model_name,
                pid,
                boxes=db_.tolist(),
                box_classes=[classes[c] for c in dc],
                box_scores=ds.tolist(),
            )
        )
        truths.append({"prediction_id": pid, "model": model_name, "boxes": gb.tolist(),
                       "box_classes": [classes[c] for c in gc], "iscrowd": crowd.tolist()})  # fmt: skip
        key = image_key(pid)
        for name, values in (("gi", np.full(n, key)), ("gb", gb), ("gc", gc), ("gk", crowd), ("di", np.full(len(db_), key)),
                             ("db", db_), ("dc", dc), ("ds", ds)):  # fmt: skip
            cols[name].append(np.asarray(values))
    assert post_predictions(db.engine, preds, config, NOW) == 60
    assert post_labels(db.engine, truths, config, NOW) == 60
    state = detection_state(
        gt_images=np.concatenate(cols["gi"]), gt_boxes=np.concatenate(cols["gb"]).astype(np.float64),
        gt_classes=np.concatenate(cols["gc"]), gt_crowd=np.concatenate(cols["gk"]),
        dt_images=np.concatenate(cols["di"]), dt_boxes=np.concatenate(cols["db"]).astype(np.float64),
        dt_classes=np.concatenate(cols["dc"]), dt_scores=np.concatenate(cols["ds"]).astype(np.float64), n_images=60,
    )  # fmt: skip
    oracle = detection_metrics(state, score_threshold=0.4).per_class
    got = counts(db.engine, model_name)
    for c, name in enumerate(classes):
        m = oracle[c]
        assert got[(f"precision-{name}", "v1")] == (m.true_positives + m.false_positives, m.false_positives)
        assert got[(f"recall-{name}", "v1")] == (m.ground_truth, m.ground_truth - m.true_positives)
    assert sum(n for n, _ in got.values()) > 100  # enough events that the comparison means something
