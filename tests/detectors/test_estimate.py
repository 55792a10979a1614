"""Label-free performance estimates against realised values once labels are known."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from drift_trials import Digits

from detectors import AccuracyEstimate, LabelFreeAccuracy, LabelFreeDetectionPrecision, NotFittedError, SummaryError
from testkit import digits as drift_digits

Window = Callable[[Digits, np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]


def _split(digits: Digits) -> tuple[np.ndarray, np.ndarray]:
    """Held-out images only (the classifier never saw them): half labelled reference, half window."""
    held_out = len(digits.model.images)
    order = np.random.default_rng(0).permutation(held_out)
    return order[: held_out // 2], order[held_out // 2 :]


def transformed(transform: Callable[[np.ndarray, np.random.Generator], np.ndarray]) -> Window:
    def window(d: Digits, idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        return d.model.predict_proba(transform(d.images[idx], rng)), d.labels[idx]

    return window


def selected_by_ink(d: Digits, idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Covariate shift by selection: thin, faint digits become three times as common."""
    ink = d.images[idx].sum(axis=(1, 2))
    weight = np.where(ink < np.median(ink), 3.0, 1.0)
    chosen = rng.choice(idx, size=len(idx), p=weight / weight.sum())
    return d.probabilities[chosen], d.labels[chosen]


def labels_swapped(d: Digits, idx: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Concept shift: the same images, but 3s are now labelled 8 and 8s are labelled 3."""
    labels = d.labels[idx].copy()
    labels[d.labels[idx] == 3], labels[d.labels[idx] == 8] = 8, 3
    return d.probabilities[idx], labels


COVARIATE_SHIFTS = [
    pytest.param(transformed(lambda x, r: x), id="no-shift"),
    pytest.param(transformed(lambda x, r: drift_digits.blur(x, 0.5)), id="blur-0.5"),
    pytest.param(transformed(lambda x, r: drift_digits.blur(x, 0.8)), id="blur-0.8"),
    pytest.param(transformed(lambda x, r: drift_digits.add_noise(x, 2.0, r)), id="noise-2"),
    pytest.param(transformed(lambda x, r: drift_digits.brighten(x, 1.3)), id="brightness-1.3"),
    pytest.param(selected_by_ink, id="selection-by-ink"),
]


@pytest.mark.parametrize("calibration", ["temperature", "isotonic"])
@pytest.mark.parametrize("window", COVARIATE_SHIFTS)
def test_tracks_realised_accuracy_within_3_points_under_covariate_shift(
    window: Window, calibration: str, digits: Digits
) -> None:
    reference, current = _split(digits)
    estimator = LabelFreeAccuracy(calibration=calibration).fit(digits.probabilities[reference], digits.labels[reference])  # type: ignore[arg-type]
    probabilities, labels = window(digits, current, np.random.default_rng(1))
    realised = float((probabilities.argmax(axis=1) == labels).mean())
    assert abs(estimator.estimate(probabilities).accuracy - realised) <= 0.03


@pytest.mark.parametrize(
    ("window", "min_gap"),
    [
        # Concept shift: confidences cannot see relabelled classes; the estimate stays put.
        pytest.param(labels_swapped, 0.10, id="concept-shift-label-swap"),
        # Far from the reference (10° rotation) the network is over-confident: optimistic estimate.
        pytest.param(transformed(lambda x, r: drift_digits.rotate(x, 10.0)), 0.04, id="rotation-10deg"),
    ],
)
def test_where_the_estimate_breaks(window: Window, min_gap: float, digits: Digits) -> None:
    reference, current = _split(digits)
    estimator = LabelFreeAccuracy().fit(digits.probabilities[reference], digits.labels[reference])
    probabilities, labels = window(digits, current, np.random.default_rng(1))
    realised = float((probabilities.argmax(axis=1) == labels).mean())
    assert estimator.estimate(probabilities).accuracy - realised >= min_gap


def test_per_class_precision_and_recall_match_a_calibrated_model() -> None:
    # Known answer: labels drawn from the model's own probabilities, so the model is calibrated
    # by construction and expected precision / recall equal the realised ones up to sampling noise.
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(20_000, 4)) * 2.0 + [1.0, 0.5, 0.0, -0.5]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in probs])
    est = LabelFreeAccuracy().fit(probs[:10_000], labels[:10_000]).estimate(probs[10_000:])
    predicted, truth = probs[10_000:].argmax(axis=1), labels[10_000:]
    assert est.accuracy == pytest.approx((predicted == truth).mean(), abs=0.015)
    for c in range(4):
        tp = np.sum((predicted == c) & (truth == c))
        assert est.precision[c] == pytest.approx(tp / np.sum(predicted == c), abs=0.03)
        assert est.recall[c] == pytest.approx(tp / np.sum(truth == c), abs=0.03)


def test_temperature_scaling_undoes_overconfidence() -> None:
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(5000, 3)) * 1.5
    labels = np.array([rng.choice(3, p=p) for p in np.exp(logits) / np.exp(logits).sum(1, keepdims=True)])
    sharpened = np.exp(3.0 * logits)  # the same model, three times over-confident
    sharpened /= sharpened.sum(axis=1, keepdims=True)
    est = LabelFreeAccuracy().fit(sharpened, labels)
    assert est.to_dict()["temperature"] == pytest.approx(3.0, rel=0.1)


def test_class_never_predicted_has_undefined_precision() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.3, 0.7, 0.0]])
    est = LabelFreeAccuracy().fit(probs, [0, 0, 1]).estimate(probs[:2])
    assert isinstance(est, AccuracyEstimate)
    assert est.precision[1] is None and est.precision[2] is None


@pytest.mark.parametrize("calibration", ["temperature", "isotonic"])
def test_estimator_round_trips(calibration: str, digits: Digits) -> None:
    reference, current = _split(digits)
    est = LabelFreeAccuracy(calibration=calibration).fit(digits.probabilities[reference], digits.labels[reference])  # type: ignore[arg-type]
    loaded = LabelFreeAccuracy.from_dict(est.to_dict())
    assert loaded.estimate(digits.probabilities[current]) == est.estimate(digits.probabilities[current])
    with pytest.raises(SummaryError):
        LabelFreeAccuracy.from_dict({"calibration": "temperature"})


def test_estimate_before_fit_is_refused() -> None:
    with pytest.raises(NotFittedError):
        LabelFreeAccuracy().estimate(np.full((2, 2), 0.5))
    with pytest.raises(NotFittedError):
        LabelFreeDetectionPrecision().estimate([0.9])


def _boxes(rng: np.random.Generator, n: int, a: float, b: float) -> tuple[np.ndarray, np.ndarray]:
    """Box scores ~ Beta(a, b); a box is a true positive with probability score² (a fixed rule)."""
    scores = rng.beta(a, b, n)
    return scores, rng.random(n) < scores**2


@pytest.mark.parametrize(
    ("a", "b"),
    [pytest.param(4, 2, id="same-scores"), pytest.param(2, 2, id="lower-scores"), pytest.param(8, 2, id="higher-scores")],
)
def test_detection_precision_tracks_realised_precision(a: float, b: float) -> None:
    rng = np.random.default_rng(4)
    est = LabelFreeDetectionPrecision(threshold=0.5).fit(*_boxes(rng, 5000, 4, 2))
    scores, true_positive = _boxes(rng, 3000, a, b)
    kept = scores >= 0.5
    estimate = est.estimate(scores)
    assert estimate is not None
    assert estimate == pytest.approx(true_positive[kept].mean(), abs=0.03)
    assert LabelFreeDetectionPrecision.from_dict(est.to_dict()).estimate(scores) == estimate
    assert est.estimate([0.1, 0.2]) is None
