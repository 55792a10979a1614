"""A small fleet for the console tests, written through the store and evaluated by the real jobs,
with the truth kept for oracles.

``shop`` (4 classes, versions v1 and v2, cameras cam-a and cam-b): 30 hours of traffic up to
``NOW`` and one day a week earlier; from ``DRIFT_FROM`` cam-b's images get hard (the true class
stands out less, so accuracy and confidence drop), which the ``ks:confidence`` detector flags.
``other``: a second model, for keys bound to one of them. SLOs on ``shop``: accuracy over all
traffic, accuracy of cam-b (burning), latency.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

CLASSES = ["cat", "dog", "fox", "owl"]
NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)
HOUR = timedelta(hours=1)
START = NOW.replace(minute=0) - 29 * HOUR
DRIFT_FROM = NOW.replace(minute=0) - 7 * HOUR
WEEK_AGO = (NOW - timedelta(days=8)).replace(hour=0, minute=0)
PER_CAMERA_HOUR = 150
LABEL_SHARE = 0.7


class SimClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Seeded:
    """What was written: names, and each prediction's record for the oracles."""

    shop: str
    other: str
    #: prediction id -> (ts, version, camera, true class, predicted class, labelled)
    rows: dict[str, tuple[datetime, str, str, int, int, bool]] = field(default_factory=dict)
    settings: Any = None

    def labelled(self, *, start: datetime, end: datetime, version: str | None = None, camera: str | None = None) -> list[tuple[int, int]]:
        return [(true, pred) for ts, v, cam, true, pred, lab in self.rows.values()
                if lab and start <= ts < end and (version is None or v == version) and (camera is None or cam == camera)]  # fmt: skip


def slos_yaml(shop: str) -> str:
    return f"""
slos:
  - {{name: {shop}-accuracy, model: {shop}, sli: accuracy, objective: 0.95, window: 7d}}
  - {{name: {shop}-accuracy-cam-b, model: {shop}, sli: accuracy, objective: 0.95, window: 7d, cohort: {{camera: cam-b}}}}
  - {{name: {shop}-latency, model: {shop}, sli: latency, objective: 0.99, window: 7d, threshold: 0.05}}
"""


def settings_for(url: str, shop: str, **overrides: Any) -> Any:
    from monitor.server.settings import Settings
    from monitor.server.slo.spec import load_slos

    return Settings(
        database_url=url, scheduler=False, slos=load_slos(slos_yaml(shop)), drift_detectors=("ks:confidence", "psi:class_mix"),
        drift_windows=("1h",), drift_reference_size=300, drift_min_samples=100, drift_min_labels=100,
        drift_max_windows_per_run=48, **overrides,
    )  # fmt: skip


def _hours() -> list[datetime]:
    return [WEEK_AGO + i * HOUR for i in range(24)] + [START + i * HOUR for i in range(30)]


def seed(engine: Any, url: str) -> Seeded:
    from monitor.server.jobs import run_once
    from monitor.server.services.ingest import write_ground_truth, write_predictions
    from monitor.server.services.models import register_model
    from monitor.server.store.engine import write_transaction
    from monitor.server.store.partitions import PartitionManager
    from monitor.wire import GroundTruth, Prediction

    tag = uuid.uuid4().hex[:8]
    out = Seeded(shop=f"shop-{tag}", other=f"other-{tag}")
    out.settings = settings_for(url, out.shop)
    slos = out.settings.slos
    partitions = PartitionManager(engine)
    with write_transaction(engine) as conn:
        register_model(conn, out.shop, "classification", CLASSES, 0.5, now=WEEK_AGO)
        register_model(conn, out.other, "classification", ["a", "b", "c"], 0.5, now=WEEK_AGO)
    rng = np.random.default_rng(7)
    preds: list[Prediction] = []
    truths: list[GroundTruth] = []
    for k, hour in enumerate(_hours()):
        for camera in ("cam-a", "cam-b"):
            for version in ("v1", "v2") if hour >= START + 10 * HOUR else ("v1",):
                n = PER_CAMERA_HOUR if version == "v1" else PER_CAMERA_HOUR // 3
                hard = camera == "cam-b" and hour >= DRIFT_FROM
                for i in range(n):
                    ts = hour + timedelta(seconds=float(rng.uniform(0, min(3600.0, (NOW - hour).total_seconds()))))
                    true = int(rng.integers(len(CLASSES)))
                    logits = rng.normal(size=len(CLASSES)) + (0.3 if hard else 3.0) * np.eye(len(CLASSES))[true]
                    p = (np.exp(logits) / np.exp(logits).sum()).astype(np.float32)
                    pred = int(p.argmax())
                    pid = f"{camera}-{version}-{hour:%m%d%H}-{i}"
                    labelled = bool(rng.random() < LABEL_SHARE)
                    out.rows[pid] = (ts, version, camera, true, pred, labelled)
                    preds.append(Prediction(
                        prediction_id=pid, model=out.shop, model_version=version, ts=ts, ts_defaulted=False, status=0,
                        latency_ms=float(rng.gamma(2.0, 6.0 if version == "v1" else 9.0)), cohort={"camera": camera},
                        predicted_class=pred, confidence=float(p[pred]), probabilities=p,
                    ))  # fmt: skip
                    if labelled:
                        truths.append(GroundTruth(prediction_id=pid, model=out.shop, labelled_at=ts, label=true))
        for i in range(20):
            ts = hour + timedelta(minutes=3 * i)
            p = np.array([0.7, 0.2, 0.1], np.float32)
            preds.append(Prediction(prediction_id=f"o-{hour:%m%d%H}-{i}", model=out.other, model_version="o1", ts=ts,
                                    ts_defaulted=False, status=0, latency_ms=5.0, cohort={"camera": "cam-z"},
                                    predicted_class=0, confidence=0.7, probabilities=p))  # fmt: skip
        if k % 6 == 5:  # six hours a batch, counted as SLO events at the batch's end
            write_predictions(engine, preds, now=min(hour + HOUR, NOW), partitions=partitions, slos=slos)
            write_ground_truth(engine, truths, now=min(hour + HOUR, NOW), slos=slos)
            preds, truths = [], []
    clock = SimClock(NOW)
    for _ in range(4):
        outcomes = run_once(engine, out.settings, clock=clock, models=[out.shop, out.other], jobs=["evaluate", "drift", "slo"])
        assert all(o.status == "ok" for o in outcomes), outcomes
        if not any(o.job == "drift" and "left for later" in o.detail and " 0 left" not in o.detail for o in outcomes):
            break
    return out
