"""Record builders for server tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

CLASSES = ["scratch", "dent", "ok"]
#: A few days back, always within the 90-day retention (a fixed date would fall out of it).
TS = f"{(datetime.now(UTC) - timedelta(days=5)).date().isoformat()}T10:15:00Z"


def register(client: Any, model: str, task: str = "classification", classes: list[str] | None = None) -> None:
    r = client.put(f"/v1/models/{model}", json={"task": task, "classes": classes or CLASSES, "operating_threshold": 0.5})
    assert r.status_code in (200, 201), r.text


def cls_record(model: str, pid: str, probs: list[float] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "prediction_id": pid,
        "model": model,
        "model_version": "v1",
        "timestamp": TS,
        "probabilities": probs or [0.7, 0.2, 0.1],
        "latency_ms": 12.5,
        "cohort": {"camera": "cam-1"},
        **extra,
    }


def det_record(model: str, pid: str, **extra: Any) -> dict[str, Any]:
    return {
        "prediction_id": pid,
        "model": model,
        "model_version": "v1",
        "timestamp": TS,
        "boxes": [[10, 10, 50, 60], [0, 0, 5, 5]],
        "box_classes": ["dent", "ok"],
        "box_scores": [0.9, 0.3],
        **extra,
    }
