"""Two weeks of a small classifier, posted through the real API, with the truth kept for oracles.

Week 2026-W46 is normal; in the report week 2026-W47 camera ``cam-b`` gets worse (its correct class
stands out less), and version ``v2`` rolls out beside ``v1``. Labels arrive an hour after their
prediction, and the server's clock follows the simulated days, so SLO events are counted on the
days they happen.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitor.wire import encode_array

CLASSES = ["cat", "dog", "fox", "owl"]
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)  # Monday of 2026-W47
PREVIOUS_START = WEEK_START - timedelta(days=7)
REPORT_TIME = WEEK_START + timedelta(days=7, hours=6)
SLO_YAML = """
slos:
  - {{name: {model}-accuracy, model: {model}, sli: accuracy, objective: 0.95, window: 30d}}
  - {{name: {model}-latency, model: {model}, sli: latency, objective: 0.99, window: 30d, threshold: 0.05}}
"""


class SimClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Posted:
    records: list[dict[str, Any]]
    truth: dict[str, int]

    def rows(
        self, *, start: datetime, end: datetime, version: str | None = None, camera: str | None = None
    ) -> list[dict[str, Any]]:
        return [
            r
            for r in self.records
            if start <= datetime.fromisoformat(r["timestamp"]) < end
            and (version is None or r["model_version"] == version)
            and (camera is None or r["cohort"]["camera"] == camera)
        ]

    def arrays(self, rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        """(labels, probabilities) of ``rows``, for the metrics engine as oracle."""
        probs = np.stack([np.frombuffer(base64.b64decode(r["probabilities"]["base64"]), "<f4") for r in rows])
        return np.array([self.truth[r["prediction_id"]] for r in rows]), probs


def synth(model: str, *, per_day: int = 40, seed: int = 1) -> Posted:
    rng = np.random.default_rng(seed)
    records, truth = [], {}
    for day in range(14):
        report_week = day >= 7
        for camera in ("cam-a", "cam-b"):
            for version in ("v1", "v2") if report_week else ("v1",):
                n = per_day if version == "v1" else per_day // 2
                for i in range(n):
                    ts = PREVIOUS_START + timedelta(
                        days=day, hours=10 + int(rng.integers(2)), minutes=int(rng.integers(60))
                    )
                    label = int(rng.integers(len(CLASSES)))
                    strength = 0.4 if (camera == "cam-b" and report_week) else 3.0
                    logits = rng.normal(size=len(CLASSES)) + strength * np.eye(len(CLASSES))[label]
                    p = np.exp(logits) / np.exp(logits).sum()
                    pid = f"{model}-{day}-{camera}-{version}-{i}"
                    records.append({
                        "prediction_id": pid, "model": model, "model_version": version, "timestamp": ts.isoformat(),
                        "probabilities": encode_array(p.astype(np.float32)), "latency_ms": float(rng.gamma(2.0, 6.0)),
                        "cohort": {"camera": camera},
                    })  # fmt: skip
                    truth[pid] = label
    return Posted(records, truth)


def post(client: Any, clock: SimClock, model: str, posted: Posted) -> None:
    """Register the model, then post each day's predictions and labels with the clock on that day."""
    answer = client.put(f"/v1/models/{model}", json={"task": "classification", "classes": CLASSES})
    assert answer.status_code in (200, 201), answer.text
    by_day: dict[datetime, list[dict[str, Any]]] = {}
    for r in posted.records:
        day = datetime.fromisoformat(r["timestamp"]).replace(hour=0, minute=0)
        by_day.setdefault(day, []).append(r)
    for day in sorted(by_day):
        clock.now = day + timedelta(hours=20)
        rows = by_day[day]
        assert client.post("/v1/predictions", json={"records": rows}).json()["accepted"] == len(rows)
        labels = [{"prediction_id": r["prediction_id"], "model": model, "label": CLASSES[posted.truth[r["prediction_id"]]],
                   "timestamp": (datetime.fromisoformat(r["timestamp"]) + timedelta(hours=1)).isoformat()} for r in rows]  # fmt: skip
        assert client.post("/v1/ground-truth", json={"records": labels}).json()["accepted"] == len(labels)


def evaluate(engine: Any, settings: Any, clock: SimClock, model: str) -> None:
    """The evaluation (and SLO time slices) as the scheduler runs them the Monday after."""
    from monitor.server.jobs import run_once

    clock.now = REPORT_TIME
    outcomes = run_once(engine, settings, clock=clock, models=[model], jobs=["evaluate", "slo"])
    assert all(o.status == "ok" for o in outcomes), outcomes


def drift_rows(
    model: str, *, version: str = "v1", camera: str = "cam-b", flagged_from: datetime
) -> list[dict[str, Any]]:
    """What the drift job stores for a week of 1h windows: ``mmd:embedding`` scores of the whole
    version (never flagged) and of one camera (flagged from ``flagged_from``)."""
    rows = []
    for h in range(7 * 24):
        start = WEEK_START + timedelta(hours=h)
        for key, value in (("", ""), ("camera", camera)):
            drifted = key != "" and start >= flagged_from
            for metric, v in (("drift_score", 0.4 if drifted else 0.01), ("drift_p_value", 0.001 if drifted else 0.6),
                              ("drift_detected", 1.0 if drifted else 0.0)):  # fmt: skip
                rows.append({
                    "model": model, "window": "1h", "window_start": start, "window_end": start + timedelta(hours=1),
                    "version": version, "cohort_key": key, "cohort_value": value, "metric": metric,
                    "class": "mmd:embedding", "value": v, "sample_count": 120, "label_coverage": None,
                    "computed_at": REPORT_TIME,
                })  # fmt: skip
    return rows
