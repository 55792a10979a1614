"""A seeded week of traffic for the benchmarks (bench/pipeline.py, bench/console.py): classification
predictions (two versions, four cameras) and COCO-like detection images, with their labels."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from monitor.wire import GroundTruth, Prediction

NOW = datetime(2026, 11, 23, 12, 30, tzinfo=UTC)
WEEK = 7 * 24 * 3600


def classification(model: str, n: int, n_classes: int, seed: int) -> tuple[list[Prediction], np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(n_classes, size=n)
    logits = rng.normal(size=(n, n_classes)).astype(np.float32)
    logits[np.arange(n), labels] += 2.5
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    stamps = NOW.timestamp() - rng.uniform(0, WEEK, size=n)
    latency = rng.gamma(2.0, 6.0, size=n)
    preds = []
    for i in range(n):
        p = probs[i]
        top = int(p.argmax())
        preds.append(Prediction(
            prediction_id=f"{model}-{i}", model=model, model_version="v2" if i % 4 == 0 else "v1",
            ts=datetime.fromtimestamp(stamps[i], UTC), ts_defaulted=False, status=0, latency_ms=float(latency[i]),
            cohort={"camera": f"cam-{i % 4}"}, predicted_class=top, confidence=float(p[top]), probabilities=p,
        ))  # fmt: skip
    return preds, labels


def detection(model: str, n: int, seed: int) -> tuple[list[Prediction], list[tuple[np.ndarray, np.ndarray]]]:
    rng = np.random.default_rng(seed)
    stamps = NOW.timestamp() - rng.uniform(0, WEEK, size=n)
    preds, truth = [], []
    for i in range(n):
        k = int(rng.poisson(7))
        xy = rng.uniform(0, 600, size=(k, 2))
        wh = rng.choice([16.0, 60.0, 180.0], size=(k, 1)) * rng.uniform(0.5, 1.5, size=(k, 2))
        gt = np.hstack([xy, xy + wh]).astype(np.float32)
        gc = rng.integers(80, size=k).astype(np.int32)
        hit = rng.random(k) < 0.75
        extra = int(rng.integers(0, 14))
        exy = rng.uniform(0, 600, size=(extra, 2))
        dt = np.vstack([gt[hit] + rng.normal(0, 4, size=(int(hit.sum()), 4)), np.hstack([exy, exy + 40])]).astype(np.float32)
        dt[:, 2:] = np.maximum(dt[:, 2:], dt[:, :2] + 1)
        dc = np.concatenate([gc[hit], rng.integers(80, size=extra)]).astype(np.int32)
        ds = rng.uniform(0.05, 1.0, size=len(dt)).astype(np.float32)
        preds.append(Prediction(
            prediction_id=f"{model}-{i}", model=model, model_version="v1", ts=datetime.fromtimestamp(stamps[i], UTC),
            ts_defaulted=False, status=0, latency_ms=float(rng.gamma(2.0, 15.0)), cohort={"camera": f"cam-{i % 4}"},
            boxes=dt, box_classes=dc, box_scores=ds,
        ))  # fmt: skip
        truth.append((gt, gc))
    return preds, truth


def labels_for(model: str, ids: np.ndarray, labels: np.ndarray | None, truth: list | None, now: datetime) -> list[GroundTruth]:
    out = []
    for i in ids:
        if labels is not None:
            out.append(GroundTruth(prediction_id=f"{model}-{i}", model=model, labelled_at=now, label=int(labels[i])))
        else:
            boxes, classes = truth[i]  # type: ignore[index]
            out.append(GroundTruth(prediction_id=f"{model}-{i}", model=model, labelled_at=now, boxes=boxes, box_classes=classes))
    return out
