"""The drift job's pure parts: bounded samples per slice, window plans, scoring thresholds, settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from monitor.errors import ConfigError
from monitor.server.services.drift import plan_windows
from monitor.server.services.drift_features import (
    DetectorSpec,
    DriftConfig,
    SliceSampler,
    extract,
    make_detector,
    score,
)
from monitor.server.services.drift_refs import Reference, ReferenceSpec
from monitor.server.services.states import SliceKey
from monitor.server.settings import Settings
from monitor.server.store.drift_reads import Record
from monitor.wire import ModelSpec

T0 = datetime(2026, 11, 20, tzinfo=UTC)
HOUR = timedelta(hours=1)
SPEC = ModelSpec.create("m", "classification", ["a", "b", "c"], 0.5)


def record(i: int, camera: str, confidence: float = 0.9) -> Record:
    return Record(f"p{i}", "v1", T0, {"camera": camera}, predicted_class=i % 3, confidence=confidence)


def test_a_window_read_hour_by_hour_keeps_the_same_sample_as_read_at_once():
    records = [record(i, f"cam-{i % 3}") for i in range(3000)]
    slices = {SliceKey("v1", "", ""), SliceKey("v1", "camera", "cam-1")}
    at_once = SliceSampler(slices, ("camera",), k=200)
    at_once.add(records)
    by_hour = SliceSampler(slices, ("camera",), k=200)
    for start in range(0, 3000, 700):
        by_hour.add(records[start : start + 700])
    for key in slices:
        assert [r.prediction_id for r in by_hour.records(key)] == [r.prediction_id for r in at_once.records(key)]
    assert len(at_once.records(SliceKey("v1", "", ""))) == 200
    assert {r.cohort["camera"] for r in at_once.records(SliceKey("v1", "camera", "cam-1"))} == {"cam-1"}  # type: ignore[index]
    assert at_once.records(SliceKey("v1", "camera", "cam-2")) == []  # not a wanted slice


def test_a_feature_below_the_minimum_is_not_scored():
    ks = DetectorSpec("ks", "confidence")
    detector = make_detector(ks, alpha=0.01, n_classes=3).fit(np.linspace(0.5, 1.0, 500))
    few = extract([record(i, "cam-1", 0.6) for i in range(99)], SPEC, {"confidence"})
    assert score([(ks, detector)], few, min_samples=100) == ([], [])
    enough = extract([record(i, "cam-1", 0.6) for i in range(100)], SPEC, {"confidence"})
    points, _ = score([(ks, detector)], enough, min_samples=100)
    assert [(p.metric, p.cls, p.value) for p in points if p.metric == "drift_detected"] == [
        ("drift_detected", "ks:confidence", 1.0)
    ]


def test_distances_without_a_p_value_store_their_threshold():
    psi = DetectorSpec("psi", "class_mix")
    detector = make_detector(psi, alpha=0.01, n_classes=3).fit(np.arange(600) % 3)
    points, _ = score([(psi, detector)], extract([record(i, "cam-1") for i in range(300)], SPEC, {"class_mix"}), 100)
    assert [p.metric for p in points] == ["drift_score", "drift_threshold", "drift_effect_size", "drift_detected"]


def test_the_job_calibrates_a_floor_and_a_model_may_set_its_own():
    ks = DetectorSpec("ks", "confidence")
    reference = np.random.default_rng(0).uniform(0.5, 1.0, 2000)
    detector = make_detector(ks, alpha=0.01, n_classes=3, min_samples=100).fit(reference)
    assert detector.floor is not None and 0.05 < detector.floor < 0.5  # KS statistics of 100 vs 100
    shifted = extract([record(i, "cam-1", 0.6 + 0.0001 * i) for i in range(300)], SPEC, {"confidence"})

    def decided(floors: dict | None) -> dict[str, float]:  # type: ignore[type-arg]
        points, _ = score([(ks, detector)], shifted, 100, floors)
        return {p.metric: p.value for p in points if p.value is not None}

    calibrated = decided(None)
    assert calibrated["drift_min_effect"] == detector.floor and calibrated["drift_detected"] == 1.0
    assert calibrated["drift_effect_size"] == calibrated["drift_score"] > detector.floor
    high = decided({"ks:confidence": 0.99})  # a model that only cares about huge shifts
    assert high["drift_min_effect"] == 0.99 and high["drift_detected"] == 0.0 and high["drift_p_value"] < 0.01
    alone = decided({"ks:confidence": 0.0})  # 0: the test alone decides
    assert "drift_min_effect" not in alone and alone["drift_detected"] == 1.0
    assert decided({"ks:confidence": None}) == calibrated  # auto: the calibrated floor


def test_permutation_counts_allow_flagging_at_small_alpha():
    mmd = make_detector(DetectorSpec("mmd", "embedding"), alpha=0.001, n_classes=3)
    assert 1 / (mmd.n_permutations + 1) <= 0.001 / 2  # type: ignore[attr-defined]


def config(**changes: object) -> DriftConfig:
    return DriftConfig.from_settings(Settings(drift_windows=("1h", "1d"), drift_min_samples=100, **changes))  # type: ignore[arg-type]


def test_windows_are_planned_complete_newest_first_with_enough_predictions():
    ref = Reference("v1", ReferenceSpec("", "first", 2000), T0, T0 + HOUR, T0, ())
    counts = [(T0 + h * HOUR, SliceKey("v1", "", ""), 150) for h in range(30)]
    counts += [(T0 + h * HOUR, SliceKey("v1", "camera", "cam-1"), 50) for h in range(30)]
    counts += [(T0 + 5 * HOUR, SliceKey("v2", "", ""), 500)]  # no reference: planned, not scored
    plans = plan_windows(counts, {"v1": ref}, config(), horizon=T0 + 2 * HOUR, current=T0 + 30 * HOUR)
    assert [(p.name, p.start) for p in plans[:3]] == [
        ("1h", T0 + 29 * HOUR),
        ("1h", T0 + 28 * HOUR),
        ("1h", T0 + 27 * HOUR),
    ]
    assert ("1d", T0) not in {(p.name, p.start) for p in plans}  # started before the horizon
    assert not any(p.name == "1d" and p.start == T0 + 24 * HOUR for p in plans)  # not complete
    hour = next(p for p in plans if p.start == T0 + 5 * HOUR)
    assert hour.slices == {SliceKey("v1", "", ""): 150} and hour.predictions == 650  # cam-1: 50 < 100


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        pytest.param({"drift_detectors": ("mmd:confidence",)}, "mmd scores embedding", id="wrong-feature"),
        pytest.param({"drift_detectors": ("lsdd:embedding",)}, "unknown detector", id="unknown-detector"),
        pytest.param({"drift_detectors": ("ks:confidence", "ks:confidence")}, "twice", id="duplicate"),
        pytest.param({"drift_alpha": 0.0}, "drift_alpha", id="alpha-zero"),
        pytest.param({"drift_windows": ("90m",)}, "window '90m'", id="bad-window"),
        pytest.param({"drift_calibration": "platt"}, "temperature or isotonic", id="bad-calibration"),
        pytest.param({"drift_reference_size": 50}, "drift_reference_size", id="reference-below-minimum"),
    ],
)
def test_bad_drift_settings_are_explained(changes, message):
    with pytest.raises(ConfigError, match=message):
        Settings(**changes).validate()  # type: ignore[arg-type]


def test_drift_settings_come_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no cvmon.yaml
    s = Settings.load({"CVMON_DRIFT_DETECTORS": "mmd:embedding, ks:confidence", "CVMON_DRIFT_ALPHA": "0.05"})
    assert s.drift_detectors == ("mmd:embedding", "ks:confidence") and s.drift_alpha == 0.05
