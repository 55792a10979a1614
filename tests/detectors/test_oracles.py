"""Statistics checked against reference implementations and hand-computed answers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import roc_auc_score

from detectors import (
    ChiSquareDrift,
    ClassifierDrift,
    Detector,
    JensenShannonDrift,
    KSDrift,
    MMDDrift,
    PCAKSDrift,
    PSIDrift,
    WassersteinDrift,
)
from detectors.classifier import _auc_rows
from detectors.pcaks import _combine


def _f32(x: np.ndarray) -> np.ndarray:
    # Embedding references are kept at float32, the precision they are stored in.
    return x.astype(np.float32).astype(np.float64)


def test_mmd_random_features_converge_to_the_exact_rbf_mmd() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((150, 3)), rng.standard_normal((120, 3)) + [0.8, 0.0, 0.0]
    result = MMDDrift(n_features=40_000, seed=1).fit(x).score(y)
    sigma = result.details["bandwidth"]
    assert isinstance(sigma, float)

    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * sigma**2))

    xf = _f32(x)
    exact = kernel(xf, xf).mean() + kernel(y, y).mean() - 2 * kernel(xf, y).mean()
    assert result.score == pytest.approx(exact, rel=0.05)


def test_mmd_bandwidth_is_the_median_reference_distance() -> None:
    x = np.random.default_rng(1).standard_normal((300, 4))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))[np.triu_indices(300, 1)]
    result = MMDDrift().fit(x).score(x)
    assert result.details["bandwidth"] == pytest.approx(np.median(d), rel=1e-4)


@pytest.mark.parametrize(
    ("make", "columns"),
    [
        pytest.param(lambda: MMDDrift(n_permutations=99), 3, id="mmd"),
        pytest.param(lambda: ClassifierDrift(n_permutations=99), 3, id="classifier"),
        pytest.param(lambda: WassersteinDrift(n_permutations=99), None, id="wasserstein"),
    ],
)
def test_permutation_p_value_counts_the_observed_arrangement(make: Callable[[], Detector], columns: int | None) -> None:
    x = np.random.default_rng(2).standard_normal((100, columns or 1))
    reference = x if columns else x[:, 0]
    result = make().fit(reference).score(reference + 10)
    # No permutation can beat a 10 σ split, so p is exactly the smallest reachable 1 / (1 + B).
    assert result.p_value == pytest.approx(1 / 100)
    assert result.is_drift


def test_auc_matches_sklearn_including_ties() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.standard_normal((4, 200)), 1)  # many ties
    labels = (rng.random((4, 200)) < 0.4).astype(float)
    expected = [roc_auc_score(lab, s) for lab, s in zip(labels, scores, strict=True)]
    np.testing.assert_allclose(_auc_rows(scores, labels), expected, rtol=1e-12)


def test_ks_matches_scipy() -> None:
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=400), rng.normal(0.2, 1.0, size=300)
    result = KSDrift().fit(x).score(y)
    expected = stats.ks_2samp(x, y)
    assert result.score == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)


def test_wasserstein_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    x, y = rng.gamma(2.0, size=500), np.round(rng.gamma(2.2, size=350), 1)
    result = WassersteinDrift().fit(x).score(y)
    assert result.score == pytest.approx(stats.wasserstein_distance(x, y), rel=1e-10)
    assert result.details["normalised"] == pytest.approx(result.score / np.std(x))


def test_chi_square_matches_scipy_and_drops_classes_empty_in_both() -> None:
    reference = np.repeat([0, 1, 2, 4], [100, 80, 60, 40])  # class 3 never occurs
    current = np.repeat([0, 1, 2, 4], [60, 90, 80, 30])
    result = ChiSquareDrift(n_classes=5).fit(reference).score(current)
    table = np.array([[100, 80, 60, 40], [60, 90, 80, 30]])
    expected = stats.chi2_contingency(table, correction=False)
    assert result.score == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    assert result.details["dof"] == 3
    assert result.details["p_value_method"] == "asymptotic"


def test_chi_square_uses_an_exact_monte_carlo_null_for_small_counts() -> None:
    reference = np.repeat([0, 1, 2], [20, 3, 2])
    current = np.repeat([0, 1, 2], [2, 3, 20])
    result = ChiSquareDrift(n_resamples=999).fit(reference).score(current)
    assert result.details["p_value_method"] == "monte carlo"
    assert result.p_value is not None and result.p_value == pytest.approx(1 / 1000)


def test_class_unseen_at_fit_is_counted_as_drift_evidence() -> None:
    reference = np.repeat([0, 1], [200, 200])
    current = np.repeat([0, 1, 7], [150, 150, 100])
    result = ChiSquareDrift().fit(reference).score(current)
    assert result.details["classes"] == ["0", "1", "unseen"]
    assert result.details["current_counts"] == [150, 150, 100]
    assert result.is_drift


def test_jensen_shannon_matches_scipy() -> None:
    reference = np.repeat([0, 1, 2, 3], [50, 30, 20, 0])
    current = np.repeat([0, 1, 2, 3], [20, 30, 30, 20])
    result = JensenShannonDrift(n_classes=4).fit(reference).score(current)
    expected = jensenshannon([50, 30, 20, 0, 0], [20, 30, 30, 20, 0], base=2)
    assert result.score == pytest.approx(expected)


def test_psi_uses_jeffreys_smoothing_on_fixed_bins() -> None:
    reference = np.repeat([0, 1], [50, 50])
    current = np.repeat([0, 1], [25, 75])
    result = PSIDrift(threshold=0.25).fit(reference).score(current)
    # Three bins (classes 0, 1 and "unseen"), half a pseudo-count each.
    p = np.array([50.5, 50.5, 0.5]) / 101.5
    q = np.array([25.5, 75.5, 0.5]) / 101.5
    assert result.score == pytest.approx(((q - p) * np.log(q / p)).sum())
    assert result.threshold == 0.25
    assert result.is_drift is bool(result.score > 0.25)
    assert result.p_value is None


@pytest.mark.parametrize("n_bins", [pytest.param(5, id="5-bins"), pytest.param(20, id="20-bins")])
def test_psi_honours_n_bins_and_keeps_bins_fixed(n_bins: int) -> None:
    rng = np.random.default_rng(6)
    detector = PSIDrift(n_bins=n_bins).fit(rng.random(2000))
    shifted = detector.score(rng.random(500) * 0.5)  # all mass in the lower half of the reference
    assert len(shifted.details["bins"]) == n_bins  # type: ignore[arg-type]
    counts = shifted.details["current_counts"]
    assert isinstance(counts, list) and sum(counts[n_bins // 2 + 1 :]) == 0  # edges did not move with the window


def test_calibrated_psi_threshold_shrinks_with_window_size() -> None:
    detector = PSIDrift().fit(np.random.default_rng(7).random(5000))
    small = detector.score(np.random.default_rng(8).random(100)).threshold
    large = detector.score(np.random.default_rng(9).random(5000)).threshold
    assert small is not None and large is not None
    # Null PSI scales like (k - 1)(1/n_ref + 1/n_cur): 9 · (1/5000 + 1/100) ≈ 0.09 at the mean.
    assert large < small
    assert 0.05 < small < 0.3


def test_bonferroni_and_benjamini_hochberg_combinations() -> None:
    p = np.array([0.01, 0.02, 0.03, 0.5])
    assert _combine(p, "bonferroni") == pytest.approx(0.04)
    # BH adjusted: min(0.01·4/1, 0.02·4/2, 0.03·4/3, 0.5·4/4) = 0.04
    assert _combine(p, "fdr") == pytest.approx(0.04)
    assert _combine(np.array([0.02, 0.021, 0.022, 0.023]), "fdr") == pytest.approx(0.023)
    assert _combine(np.array([0.02, 0.021, 0.022, 0.023]), "bonferroni") == pytest.approx(0.08)


def test_pca_ks_reports_scipy_p_values_per_component() -> None:
    rng = np.random.default_rng(10)
    x = rng.standard_normal((400, 5)) * [5, 3, 2, 1, 0.5]
    y = rng.standard_normal((300, 5)) * [5, 3, 2, 1, 0.5] + [0, 0, 3, 0, 0]
    result = PCAKSDrift(n_components=3).fit(x).score(y)
    p_values = result.details["p_values"]
    assert isinstance(p_values, list) and len(p_values) == 3
    assert result.p_value == pytest.approx(min(1.0, 3 * min(p_values)))
    assert result.is_drift


def test_cross_fitted_scores_match_sklearn_ridge_per_fold() -> None:
    from sklearn.linear_model import Ridge

    from detectors.classifier import _cross_fitted_scores

    rng = np.random.default_rng(11)
    x = rng.standard_normal((90, 4)) * [1.0, 2.0, 0.5, 1.0]
    labels = (rng.random((90, 3)) < 0.5).astype(float)
    scores = _cross_fitted_scores(x, labels, 3, 1.0, np.random.default_rng(5))
    assignment = np.random.default_rng(5).permutation(90) % 3
    centred = x - x.mean(axis=0)
    penalty = np.trace(centred.T @ centred) / 4 / 90  # ridge = 1, relative to the mean feature variance
    for k in range(3):
        train, test = assignment != k, assignment == k
        # An unpenalised intercept makes the centring irrelevant: sklearn's Ridge is the oracle.
        model = Ridge(alpha=penalty * train.sum()).fit(x[train], labels[train])
        np.testing.assert_allclose(scores[test], model.predict(x[test]), rtol=1e-4, atol=1e-5)
