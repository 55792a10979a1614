"""Measured false-alarm rates under no shift and power on real shifts.

Each no-shift case runs NULL_TRIALS (200) windows and requires at most 8 % flagged at
alpha = 0.05; each power case runs fresh windows with a real shift of the digits images (or a
Gaussian case with a known answer) and requires the stated detection rate. These measure the
tests themselves (detectors without an effect-size floor, the library's default). The last test
measures the drift job's default detectors with the floor the job gives them: still the bar on a
rotation, and an 8 % darker camera left alone.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from drift_trials import MAX_FALSE_ALARM_RATE, NULL_TRIALS, Digits, PairSampler, disjoint_pair, flag_rate

from detectors import (
    ChiSquareDrift,
    ClassifierDrift,
    Detector,
    EffectFloor,
    EvidentlyColumnDrift,
    EvidentlyEmbeddingDrift,
    JensenShannonDrift,
    KSDrift,
    MMDDrift,
    PCAKSDrift,
    PSIDrift,
    WassersteinDrift,
)
from testkit import digits as drift_digits

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

Factory = Callable[[int], Detector]
Source = Callable[[Digits], PairSampler]


def gaussian(size: int, dim: int, *, shift: float = 0.0, scale: float = 1.0) -> Source:
    """Windows from N(0, I) against N(shift, scale² I); ``dim == 0`` gives 1-D scores."""

    def source(_: Digits) -> PairSampler:
        shape = (size,) if dim == 0 else (size, dim)
        return lambda rng: (rng.standard_normal(shape), shift + scale * rng.standard_normal(shape))

    return source


def saturated_confidences(size: int) -> Source:
    """Confidences of a sure model: 1 - 10^U(-9, -5), closer to 1 than float32 can tell apart."""

    def source(_: Digits) -> PairSampler:
        return lambda rng: tuple(1.0 - 10.0 ** rng.uniform(-9, -5, size) for _ in range(2))  # type: ignore[return-value]

    return source


def embeddings(size: int) -> Source:
    return lambda d: disjoint_pair(d.embeddings, d.embeddings, size)


def rotated_embeddings(size: int) -> Source:
    return lambda d: disjoint_pair(d.embeddings, d.rotated_10, size)


def confidences(size: int) -> Source:
    return lambda d: disjoint_pair(d.probabilities.max(axis=1), d.probabilities.max(axis=1), size)


def predicted_classes(size: int) -> Source:
    return lambda d: disjoint_pair(d.probabilities.argmax(axis=1), d.probabilities.argmax(axis=1), size)


def blurred_confidences(size: int, sigma: float) -> Source:
    def source(d: Digits) -> PairSampler:
        blurred = d.shifted_probabilities(drift_digits.blur(d.images, sigma)).max(axis=1)
        return disjoint_pair(d.probabilities.max(axis=1), blurred, size)

    return source


def prior_shifted_classes(size: int, boost: float) -> Source:
    """Predicted classes when the scene changes: true digits 0-4 become ``boost`` times as common."""

    def source(d: Digits) -> PairSampler:
        predicted = d.probabilities.argmax(axis=1)
        weight = np.where(d.labels < 5, boost, 1.0)

        def sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            order = rng.permutation(len(predicted))
            reference, rest = order[:size], order[size:]
            current = rng.choice(rest, size=size, replace=False, p=weight[rest] / weight[rest].sum())
            return predicted[reference], predicted[current]

        return sample

    return source


def brightness_stats(size: int, factor: float) -> Source:
    """Image statistics a client might send as metadata: mean and spread of pixels, share of ink."""

    def stats(images: np.ndarray) -> np.ndarray:
        return np.column_stack([images.mean(axis=(1, 2)), images.std(axis=(1, 2)), (images > 8).mean(axis=(1, 2))])

    return lambda d: disjoint_pair(stats(d.images), stats(drift_digits.brighten(d.images, factor)), size)


NO_SHIFT = [
    pytest.param(lambda s: MMDDrift(seed=s), embeddings(500), id="mmd-digits"),
    pytest.param(lambda s: MMDDrift(seed=s), gaussian(200, 32), id="mmd-gaussian"),
    pytest.param(lambda s: ClassifierDrift(seed=s), embeddings(500), id="classifier-digits"),
    pytest.param(lambda s: ClassifierDrift(seed=s), gaussian(200, 32), id="classifier-gaussian"),
    pytest.param(lambda s: PCAKSDrift(seed=s), embeddings(500), id="pca-ks-bonferroni-digits"),
    pytest.param(lambda s: PCAKSDrift(seed=s, correction="fdr"), embeddings(500), id="pca-ks-fdr-digits"),
    # Isotropic and high-dimensional: PCA fitted and tested on the same rows would flag every window.
    pytest.param(lambda s: PCAKSDrift(seed=s), gaussian(300, 128), id="pca-ks-isotropic-gaussian"),
    pytest.param(lambda s: KSDrift(seed=s), confidences(500), id="ks-digits-confidence"),
    pytest.param(lambda s: KSDrift(seed=s), gaussian(200, 0), id="ks-gaussian"),
    pytest.param(lambda s: KSDrift(seed=s), saturated_confidences(300), id="ks-confidence-near-1"),
    pytest.param(lambda s: WassersteinDrift(seed=s), saturated_confidences(300), id="wasserstein-confidence-near-1"),
    pytest.param(lambda s: WassersteinDrift(seed=s), confidences(500), id="wasserstein-digits-confidence"),
    pytest.param(lambda s: WassersteinDrift(seed=s), gaussian(200, 0), id="wasserstein-gaussian"),
    pytest.param(lambda s: PSIDrift(seed=s), confidences(500), id="psi-digits-confidence"),
    pytest.param(lambda s: PSIDrift(seed=s), predicted_classes(500), id="psi-digits-class-mix"),
    pytest.param(lambda s: PSIDrift(seed=s, n_bins=20), gaussian(200, 0), id="psi-20-bins-gaussian"),
    pytest.param(lambda s: JensenShannonDrift(seed=s), predicted_classes(500), id="jsd-digits-class-mix"),
    pytest.param(lambda s: JensenShannonDrift(seed=s), confidences(500), id="jsd-digits-confidence"),
    pytest.param(lambda s: ChiSquareDrift(seed=s), predicted_classes(500), id="chi-square-digits-class-mix"),
    # 60 samples over 10 classes: expected counts below 5, so the Monte Carlo p-value is used.
    pytest.param(lambda s: ChiSquareDrift(seed=s), predicted_classes(60), id="chi-square-small-counts"),
    # Evidently's model method spends ~0.2 s per window on its own bootstrap whatever the size.
    pytest.param(lambda s: EvidentlyEmbeddingDrift("model", seed=s), embeddings(200), id="evidently-model-digits"),
    pytest.param(lambda s: EvidentlyEmbeddingDrift("mmd", seed=s), embeddings(200), id="evidently-mmd-digits"),
    pytest.param(lambda s: EvidentlyEmbeddingDrift("distance", seed=s), embeddings(200), id="evidently-distance-digits"),
    pytest.param(lambda s: EvidentlyColumnDrift(seed=s), brightness_stats(300, 1.0), id="evidently-columns-digits"),
]


#: Evidently's model method bootstraps on its own, ~0.4 s a window: half the trials, in the suite's time.
FEWER_TRIALS = {"evidently-model-digits": NULL_TRIALS // 2}


@pytest.mark.parametrize(("make", "source"), NO_SHIFT)
def test_false_alarm_rate_holds_under_no_shift(make: Factory, source: Source, digits: Digits, request: pytest.FixtureRequest) -> None:
    trials = FEWER_TRIALS.get(request.node.callspec.id, NULL_TRIALS)
    rate = flag_rate(make, source(digits), trials, entropy=20260)
    print(f"\n{request.node.callspec.id}: {rate:.3f} of {trials} no-shift windows flagged")
    assert rate <= MAX_FALSE_ALARM_RATE


def test_evidently_ratio_does_not_hold_its_rate_on_small_windows(digits: Digits) -> None:
    # Evidently's ratio method compares a share of components with fixed distances and ignores
    # alpha; on small windows noise alone crosses them. Measured and documented, not hidden.
    make: Factory = lambda s: EvidentlyEmbeddingDrift("ratio", seed=s)  # noqa: E731
    rate = flag_rate(make, gaussian(50, 16)(digits), NULL_TRIALS, entropy=20261)
    assert rate > 4 * MAX_FALSE_ALARM_RATE


SHIFTED = [
    # The bar: a 10° rotation, 500 samples per side, detected in at least 90 % of trials.
    pytest.param(lambda s: MMDDrift(seed=s), rotated_embeddings(500), 100, 0.9, id="mmd-rotation-10deg"),
    pytest.param(lambda s: ClassifierDrift(seed=s), rotated_embeddings(500), 100, 0.9, id="classifier-rotation-10deg"),
    pytest.param(lambda s: PCAKSDrift(seed=s), rotated_embeddings(500), 50, 0.9, id="pca-ks-rotation-10deg"),
    pytest.param(lambda s: MMDDrift(seed=s), rotated_embeddings(100), 50, 0.6, id="mmd-rotation-10deg-100-per-side"),
    pytest.param(lambda s: KSDrift(seed=s), blurred_confidences(300, 0.8), 50, 0.9, id="ks-confidence-blur"),
    pytest.param(
        lambda s: WassersteinDrift(seed=s), blurred_confidences(300, 0.8), 50, 0.9, id="wasserstein-confidence-blur"
    ),
    pytest.param(lambda s: PSIDrift(seed=s), blurred_confidences(300, 0.8), 50, 0.9, id="psi-confidence-blur"),
    pytest.param(lambda s: ChiSquareDrift(seed=s), prior_shifted_classes(500, 2.0), 50, 0.9, id="chi-square-class-mix-prior-shift"),
    pytest.param(lambda s: PSIDrift(seed=s), prior_shifted_classes(500, 2.0), 50, 0.9, id="psi-class-mix-prior-shift"),
    pytest.param(lambda s: JensenShannonDrift(seed=s), prior_shifted_classes(500, 2.0), 50, 0.9, id="jsd-class-mix-prior-shift"),
    pytest.param(lambda s: EvidentlyColumnDrift(seed=s), brightness_stats(300, 1.2), 30, 0.9, id="evidently-columns-brightness"),
    # Gaussian cases with known answers: a 0.5 σ mean shift at n = 200 per side has power ≈ 1
    # for the optimal z-test (0.5 · sqrt(100) = 5 standard errors); every test should find it.
    pytest.param(lambda s: MMDDrift(seed=s), gaussian(200, 8, shift=0.5), 30, 0.95, id="mmd-gaussian-mean"),
    pytest.param(lambda s: ClassifierDrift(seed=s), gaussian(200, 8, shift=0.5), 30, 0.95, id="classifier-gaussian-mean"),
    pytest.param(lambda s: KSDrift(seed=s), gaussian(200, 0, shift=0.5), 30, 0.95, id="ks-gaussian-mean"),
    pytest.param(lambda s: WassersteinDrift(seed=s), gaussian(200, 0, shift=0.5), 30, 0.95, id="wasserstein-gaussian-mean"),
    # A pure scale change: invisible to a linear classifier of the mean, seen by the kernel test.
    pytest.param(lambda s: MMDDrift(seed=s), gaussian(200, 8, scale=1.5), 30, 0.95, id="mmd-gaussian-scale"),
]


@pytest.mark.parametrize(("make", "source", "trials", "power"), SHIFTED)
def test_detects_shift(make: Factory, source: Source, trials: int, power: float, digits: Digits) -> None:
    assert flag_rate(make, source(digits), trials, entropy=4242) >= power


def darker_embeddings(size: int) -> Source:
    """The demo's healthy cam-2: the same scenes 8 % darker, statistically different, harmless."""
    return lambda d: disjoint_pair(d.embeddings, d.model.embed(drift_digits.brighten(d.images, 0.92)), size)


def darker_confidences(size: int) -> Source:
    def source(d: Digits) -> PairSampler:
        darker = d.shifted_probabilities(drift_digits.brighten(d.images, 0.92)).max(axis=1)
        return disjoint_pair(d.probabilities.max(axis=1), darker, size)

    return source


def rotated_confidences(size: int) -> Source:
    def source(d: Digits) -> PairSampler:
        rotated = d.shifted_probabilities(drift_digits.rotate(d.images, 10.0)).max(axis=1)
        return disjoint_pair(d.probabilities.max(axis=1), rotated, size)

    return source


#: The floor the drift job gives its detectors: calibrated on the reference from pairs of samples
#: of drift_min_samples (100) rows (monitor/server/services/drift_features.py, make_detector).
JOB_FLOOR = EffectFloor(chunk=100)

WITH_THE_JOB_FLOOR = [
    pytest.param(MMDDrift, rotated_embeddings(500), darker_embeddings(500), 0.5, id="mmd"),
    pytest.param(PCAKSDrift, rotated_embeddings(500), darker_embeddings(500), 0.3, id="pca-ks"),
    pytest.param(KSDrift, rotated_confidences(500), darker_confidences(500), 0.3, id="ks-confidence"),
]


@pytest.mark.slow  # 80 fits with a calibrated floor each
@pytest.mark.parametrize(("detector", "rotated", "darker", "darker_without_floor"), WITH_THE_JOB_FLOOR)
def test_with_the_job_floor_a_rotation_is_flagged_and_a_darker_camera_is_not(
    detector: type[Detector], rotated: Source, darker: Source, darker_without_floor: float, digits: Digits
) -> None:
    """The drift job's default detectors keep the issue's bar on a 10° rotation (>= 90 % of 500-image
    windows flagged) with their floor, while an 8 % darker camera -- flagged often by the test
    alone -- is flagged in at most 10 % of windows."""
    floored: Factory = lambda s: detector(seed=s, floor=JOB_FLOOR)  # noqa: E731
    bare: Factory = lambda s: detector(seed=s)  # noqa: E731
    assert flag_rate(floored, rotated(digits), 20, entropy=4242) >= 0.9
    assert flag_rate(floored, darker(digits), 20, entropy=4243) <= 0.1
    assert flag_rate(bare, darker(digits), 20, entropy=4243) >= darker_without_floor
