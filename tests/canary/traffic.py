"""Synthetic traffic of two model versions, sent through the real HTTP ingest API."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

CLASSES = ["scratch", "dent", "ok"]


@dataclass(frozen=True)
class Version:
    name: str
    accuracy: float = 0.9
    #: Beta(a, 1) confidences of the predicted class (mean a / (a + 1))
    confidence_a: float = 6.0
    latency_ms: float = 20.0
    error_rate: float = 0.0
    #: share of predictions per class (the true class mix)
    mix: tuple[float, ...] = (0.2, 0.3, 0.5)


def records(
    model: str, version: Version, n: int, *, start: datetime, seed: int, labelled: float = 0.0, mirror_of: int | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Predictions (and ground truth for a ``labelled`` share) of one version, one a second from
    ``start``. ``mirror_of``: a seed whose inputs this traffic repeats (same input_hash and labels)."""
    rng = np.random.default_rng(seed)
    inputs = np.random.default_rng(seed if mirror_of is None else mirror_of)
    truth = inputs.choice(len(CLASSES), size=n, p=version.mix)
    hashes = [f"in-{mirror_of if mirror_of is not None else seed}-{i}" for i in range(n)]
    correct = rng.random(n) < version.accuracy
    wrong = (truth + rng.integers(1, len(CLASSES), n)) % len(CLASSES)
    predicted = np.where(correct, truth, wrong)
    confidence = 1.0 / len(CLASSES) + (1 - 1.0 / len(CLASSES)) * rng.beta(version.confidence_a, 1.0, n)
    latency = version.latency_ms * rng.lognormal(0.0, 0.3, n)
    errors = rng.random(n) < version.error_rate
    label_it = rng.random(n) < labelled
    preds, labels = [], []
    for i in range(n):
        rest = (1 - confidence[i]) / (len(CLASSES) - 1)
        probs = [rest] * len(CLASSES)
        probs[int(predicted[i])] = float(confidence[i])
        pid = f"{version.name}-{seed}-{i}"
        ts = (start + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        record: dict[str, Any] = {
            "prediction_id": pid, "model": model, "model_version": version.name, "timestamp": ts,
            "latency_ms": float(latency[i]), "input_hash": hashes[i],
        }  # fmt: skip
        if errors[i]:
            record["status"] = "error"
        else:
            record["probabilities"] = probs
        preds.append(record)
        if label_it[i] and not errors[i]:
            labels.append({"prediction_id": pid, "model": model, "label": CLASSES[int(truth[i])]})
    return preds, labels


def send(client: Any, predictions: list[dict[str, Any]], labels: list[dict[str, Any]]) -> None:
    for kind, rows in (("predictions", predictions), ("ground-truth", labels)):
        for i in range(0, len(rows), 2000):
            r = client.post(f"/v1/{kind}", json={"records": rows[i : i + 2000]})
            assert r.status_code == 200, r.text
            assert not r.json()["rejected"], r.json()["rejected"][:3]


def register(client: Any, model: str, task: str = "classification") -> None:
    r = client.put(f"/v1/models/{model}", json={"task": task, "classes": CLASSES, "operating_threshold": 0.5})
    assert r.status_code in (200, 201), r.text


def start_time() -> datetime:
    """Two hours ago, on the second (inside retention, before now)."""
    return (datetime.now(UTC) - timedelta(hours=2)).replace(microsecond=0)
