"""Queue strategies over the database (service level, in a rolled-back transaction): disagreement
between two versions on the same input, drift from the reference, unlabelled items only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.server.rollout_config import AutomationConfig
from monitor.server.services.ingest import store_ground_truth, store_predictions
from monitor.server.services.models import model_spec, register_model
from monitor.server.services.queues import QueueSpec, build_queue, queue_items
from monitor.server.services.samples import sample_id
from monitor.server.store import tables as t
from monitor.wire import GroundTruth, Prediction

NOW = datetime(2026, 12, 7, 12, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _partitions(db: Any) -> None:
    """The days these tests write (PostgreSQL partitions; created outside the test's transaction)."""
    from monitor.server.store.partitions import PartitionManager

    PartitionManager(db.engine).ensure_ahead(NOW, 1, days_back=3)


def _prediction(model: str, pid: str, version: str, probs: np.ndarray, *, ts: datetime, input_hash: str | None = None,
                embedding: np.ndarray | None = None) -> Prediction:  # fmt: skip
    p = probs.astype(np.float32)
    return Prediction(pid, model, version, ts, False, 0, input_hash=input_hash, probabilities=p,
                      predicted_class=int(p.argmax()), confidence=float(p.max()),
                      embedding=None if embedding is None else embedding.astype(np.float32))  # fmt: skip


def _with_samples(conn: Any, model: str, preds: list[Prediction]) -> None:
    store_predictions(conn, preds, now=NOW)
    conn.execute(sa.insert(t.samples), [
        {"model": model, "prediction_id": p.prediction_id, "sample_id": sample_id(model, p.prediction_id), "captured_at": p.ts,
         "received_at": NOW, "reason": "rate", "media_type": "image/png", "width": 8, "height": 8, "size_bytes": 10,
         "sha256": b"\0" * 32, "faces": 0, "plates": 0, "masking": "faces:mask,plates:mask", "exposed": False,
         "key_id": "a", "object_key": f"{model}/x/{p.prediction_id}"}
        for p in preds
    ])  # fmt: skip


def test_disagreement_ranks_inputs_the_two_versions_see_differently(tx: Any, model_name: str) -> None:
    register_model(tx, model_name, "classification", ["a", "b", "c"], 0.5, now=NOW)
    rng = np.random.default_rng(0)
    base, cand = [], []
    gaps = {}
    for i in range(40):
        p = rng.dirichlet(np.ones(3))
        q = p if i % 4 else rng.dirichlet(np.ones(3))  # a quarter of the inputs: the candidate disagrees
        ts = NOW - timedelta(minutes=i + 1)
        base.append(_prediction(model_name, f"b{i}", "v1", p, ts=ts, input_hash=f"h{i}"))
        cand.append(_prediction(model_name, f"c{i}", "v2", q, ts=ts, input_hash=f"h{i}"))
        gaps[f"c{i}"] = 0.5 * np.abs(np.float32(p) - np.float32(q)).sum()
    store_predictions(tx, base, now=NOW)
    _with_samples(tx, model_name, cand)
    spec = model_spec(tx, model_name)
    assert spec is not None
    status = build_queue(tx, AutomationConfig(), spec, "canary", QueueSpec(strategy="disagreement", size=10, version="v2",
                                                                           baseline="v1", diversity=False), now=NOW)  # fmt: skip
    items = queue_items(tx, model_name, "canary")
    expected = sorted(gaps, key=lambda pid: -gaps[pid])[:10]
    assert status.size == 10 and [i.prediction_id for i in items] == expected
    assert [i.score for i in items] == pytest.approx([gaps[pid] for pid in expected], abs=1e-6)


def test_drift_ranks_inputs_far_from_the_reference_and_skips_labelled_ones(tx: Any, model_name: str) -> None:
    register_model(tx, model_name, "classification", ["a", "b"], 0.5, now=NOW)
    rng = np.random.default_rng(1)
    start = NOW - timedelta(days=2)
    reference = [_prediction(model_name, f"r{i}", "v1", np.array([0.8, 0.2]), ts=start + timedelta(seconds=i),
                             embedding=rng.normal(0, 1, 8)) for i in range(300)]  # fmt: skip
    store_predictions(tx, reference, now=NOW)
    tx.execute(sa.insert(t.drift_references).values(
        model=model_name, version="v1", detector="mmd", feature="embedding", summary=b"", n_reference=300,
        reference_start=start, reference_end=start + timedelta(seconds=300), fitted_at=NOW,
    ))  # fmt: skip
    current = [_prediction(model_name, f"x{i}", "v1", np.array([0.8, 0.2]), ts=NOW - timedelta(minutes=i + 1),
                           embedding=rng.normal(0, 1, 8) + (6 if i < 5 else 0)) for i in range(40)]  # fmt: skip
    _with_samples(tx, model_name, current)
    store_ground_truth(tx, [GroundTruth("x0", model_name, NOW, label=0)], now=NOW)  # labelled: not a candidate
    spec = model_spec(tx, model_name)
    assert spec is not None
    build_queue(tx, AutomationConfig(), spec, "drift", QueueSpec(strategy="drift", size=4, diversity=False,
                                                                 since=NOW - timedelta(hours=1)), now=NOW)  # fmt: skip
    assert sorted(i.prediction_id for i in queue_items(tx, model_name, "drift")) == ["x1", "x2", "x3", "x4"]
