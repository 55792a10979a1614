"""Effect-size floors: a window is flagged when the test rejects *and* the effect matters.

The floor is calibrated on the reference (mean + 3 sd of the effect sizes between pairs of
reference samples, :mod:`detectors.floor`). On the digits, an 8 % darker camera (the demo's
healthy cam-2) is statistically different on 900 images, but below the floor of every detector;
a 10° rotation is far above it. A fixed floor, no floor, serialisation and the decision rule are
checked on every detector.
"""

from __future__ import annotations

import numpy as np
import pytest
from drift_trials import Digits

from detectors import (
    ChiSquareDrift,
    ClassifierDrift,
    Detector,
    DriftResult,
    EffectFloor,
    EvidentlyColumnDrift,
    EvidentlyEmbeddingDrift,
    JensenShannonDrift,
    KSDrift,
    MMDDrift,
    PCAKSDrift,
    PSIDrift,
    WassersteinDrift,
    from_bytes,
    from_dict,
    to_bytes,
)
from detectors.chisquare import total_variation
from detectors.floor import calibrate
from testkit import digits as drift_digits


def result(significant: bool, effect: float, floor: float | None) -> DriftResult:
    return DriftResult("x", effect, 0.01, 0.05, significant, effect, 100, 100, floor=floor)


def test_drift_needs_both_the_test_and_the_effect():
    assert result(True, 0.3, 0.2).is_drift
    assert not result(True, 0.1, 0.2).is_drift  # statistically true, too small to matter
    assert not result(False, 0.3, 0.2).is_drift  # large but not significant (few samples)
    assert result(True, 0.01, None).is_drift  # no floor: the test alone
    assert not result(True, 0.3, 0.2).with_floor(0.5).is_drift
    assert result(True, 0.3, 0.2).to_dict() | {} == {
        "method": "x", "score": 0.3, "p_value": 0.01, "threshold": 0.05, "significant": True, "effect_size": 0.3,
        "floor": 0.2, "is_drift": True, "n_reference": 100, "n_current": 100, "details": {},
    }  # fmt: skip


def _views(digits: Digits, feature: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(reference, same source, 8 % darker, rotated 10°) of disjoint digits images, as embeddings
    or top-class confidences."""
    order = np.random.default_rng(0).permutation(len(digits.images))
    ref, cur = order[:900], order[900:]
    model, images = digits.model, digits.images
    view = model.embed if feature == "embedding" else (lambda x: model.predict_proba(x).max(axis=1))
    return (
        view(images[ref]),
        view(images[cur]),
        view(drift_digits.brighten(images[cur], 0.92)),
        view(drift_digits.rotate(images[cur], 10.0)),
    )


@pytest.mark.parametrize(
    ("make", "feature"),
    [
        pytest.param(lambda: MMDDrift(floor=EffectFloor()), "embedding", id="mmd"),
        pytest.param(lambda: PCAKSDrift(floor=EffectFloor()), "embedding", id="pca-ks"),
        pytest.param(lambda: KSDrift(floor=EffectFloor()), "confidence", id="ks-confidence"),
    ],
)
def test_a_darker_camera_is_significant_but_below_the_floor_and_a_rotation_is_not(make, feature, digits):
    # (the linear domain classifier, not a default detector of the drift job, tells the darker
    # images apart with an AUC of 0.72, above its floor of 0.70: for it the change is large)
    reference, same, dark, rotated = _views(digits, feature)
    detector = make().fit(reference)
    assert detector.floor is not None and detector.floor > 0
    unchanged, dimmer, turned = (detector.score(x) for x in (same, dark, rotated))
    assert not unchanged.is_drift
    assert dimmer.significant and dimmer.effect_size < dimmer.floor and not dimmer.is_drift
    assert turned.significant and turned.effect_size > 1.2 * turned.floor and turned.is_drift  # type: ignore[operator]


def test_the_floor_is_mean_plus_three_sd_of_reference_pairs(digits: Digits):
    reference = digits.probabilities.max(axis=1)
    spec = EffectFloor(chunk=100, pairs=20, sigmas=3.0)
    calibration = calibrate(KSDrift(), reference, spec)
    assert calibration.chunk == 100 and len(calibration.effects) == 20
    assert calibration.floor == pytest.approx(calibration.mean + 3 * calibration.sd)
    # two samples of 100 from one distribution: KS statistics around 1.2 / sqrt(50)
    assert 0.1 < calibration.mean < 0.25
    # what fit stores, deterministically from the seed
    assert KSDrift(floor=spec).fit(reference).floor == calibration.floor
    # a small reference: the samples are halves of it; too small: no floor
    assert calibrate(KSDrift(), reference[:60], spec).chunk == 30
    assert calibrate(KSDrift(), reference[:15], spec).floor is None


def test_fixed_and_no_floor():
    reference = np.random.default_rng(1).normal(size=400)
    assert KSDrift(floor=EffectFloor(min_effect=0.3)).fit(reference).floor == 0.3
    assert KSDrift(floor=EffectFloor(min_effect=None)).fit(reference).floor is None
    assert KSDrift().fit(reference).floor is None  # the library default: the test alone
    with pytest.raises(ValueError, match="min_effect"):
        EffectFloor(min_effect=-1)
    with pytest.raises(ValueError, match="chunk"):
        EffectFloor(chunk=3)


def test_chi_square_effect_is_the_total_variation_of_the_class_mix():
    reference = np.repeat([0, 1, 2], [500, 300, 200])
    current = np.repeat([0, 1, 2], [50, 30, 120])
    r = ChiSquareDrift().fit(reference).score(current)
    assert r.effect_size == pytest.approx(0.5 * (abs(0.5 - 0.25) + abs(0.3 - 0.15) + abs(0.2 - 0.6)))
    assert r.effect_size == total_variation(np.array([500, 300, 200]), np.array([50, 30, 120]))
    # X² grows with the window, the effect size does not
    bigger = ChiSquareDrift().fit(reference).score(np.repeat(current, 10))
    assert bigger.score > 3 * r.score and bigger.effect_size == pytest.approx(r.effect_size)


def _data(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    if kind == "embeddings":
        return rng.normal(size=(n, 8))
    if kind == "scores":
        return rng.beta(8, 2, n)
    if kind == "columns":
        return rng.normal(size=(n, 3))
    return rng.integers(0, 5, n)


EVERY_DETECTOR = [
    pytest.param(lambda f: MMDDrift(floor=f), "embeddings", id="mmd"),
    pytest.param(lambda f: ClassifierDrift(floor=f), "embeddings", id="classifier"),
    pytest.param(lambda f: PCAKSDrift(floor=f), "embeddings", id="pca-ks"),
    pytest.param(lambda f: KSDrift(floor=f), "scores", id="ks"),
    pytest.param(lambda f: WassersteinDrift(floor=f), "scores", id="wasserstein"),
    pytest.param(lambda f: PSIDrift(floor=f), "scores", id="psi"),
    pytest.param(lambda f: JensenShannonDrift(floor=f), "classes", id="jsd"),
    pytest.param(lambda f: ChiSquareDrift(floor=f), "classes", id="chi-square"),
    pytest.param(lambda f: EvidentlyEmbeddingDrift("distance", floor=f, bootstrap=False), "embeddings",
                 id="evidently-embedding", marks=pytest.mark.slow),  # ~9 s: Evidently per pair
    pytest.param(lambda f: EvidentlyColumnDrift(floor=f), "columns", id="evidently-columns"),
]  # fmt: skip


@pytest.mark.parametrize(("make", "kind"), EVERY_DETECTOR)
def test_every_detector_calibrates_stores_and_reloads_its_floor(make, kind):
    rng = np.random.default_rng(2)
    reference, current = _data(kind, rng, 400), _data(kind, rng, 150)
    spec = EffectFloor(chunk=60, pairs=5)
    detector: Detector = make(spec).fit(reference)
    assert detector.floor is not None and np.isfinite(detector.floor)
    got = detector.score(current)
    assert got.floor == detector.floor and got.is_drift == (got.significant and got.effect_size > got.floor)
    for again in (from_dict(detector.to_dict()), from_bytes(to_bytes(detector))):
        assert again.floor == detector.floor and again.effect_floor == spec
        assert again.score(current) == got
    # a summary stored before floors existed loads with none
    old = {k: v for k, v in detector.to_dict().items() if k != "floor"}
    assert from_dict(old).floor is None and from_dict(old).score(current).floor is None
