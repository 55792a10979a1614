"""The public surface: names, lazy imports, the fit/score contract, stored summaries."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import detectors
from detectors import (
    ChiSquareDrift,
    ClassifierDrift,
    Detector,
    DriftResult,
    EvidentlyColumnDrift,
    EvidentlyEmbeddingDrift,
    JensenShannonDrift,
    KSDrift,
    MMDDrift,
    NotFittedError,
    PCAKSDrift,
    PSIDrift,
    SummaryError,
    WassersteinDrift,
    from_bytes,
    from_dict,
    to_bytes,
)

ISSUE_NAMES = {
    "MMDDrift", "ClassifierDrift", "PCAKSDrift", "ChiSquareDrift", "PSIDrift", "KSDrift",
    "WassersteinDrift", "EvidentlyEmbeddingDrift", "DriftResult",
}  # fmt: skip


def test_all_is_sorted_and_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(detectors).items()
        if not name.startswith("_") and getattr(value, "__module__", "").startswith("detectors")
    }
    assert detectors.__all__ == sorted(detectors.__all__)
    assert set(detectors.__all__) == public
    assert public >= ISSUE_NAMES


def test_import_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, detectors\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'sklearn', 'evidently', 'pandas', 'torch'})\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


rng = np.random.default_rng(7)
EMB_REF, EMB_CUR = rng.standard_normal((120, 6)), rng.standard_normal((90, 6)) + 0.3
SCORE_REF, SCORE_CUR = rng.beta(5, 2, 300), rng.beta(4, 2, 200)
CLASS_REF, CLASS_CUR = rng.integers(0, 5, 300), rng.integers(0, 6, 200)  # class 5 is new in the current

CASES: list[Any] = [
    pytest.param(lambda: MMDDrift(n_features=64), EMB_REF, EMB_CUR, id="mmd"),
    pytest.param(lambda: ClassifierDrift(n_folds=3), EMB_REF, EMB_CUR, id="classifier"),
    pytest.param(lambda: PCAKSDrift(n_components=3, correction="fdr"), EMB_REF, EMB_CUR, id="pca-ks"),
    pytest.param(lambda: KSDrift(), SCORE_REF, SCORE_CUR, id="ks"),
    pytest.param(lambda: WassersteinDrift(), SCORE_REF, SCORE_CUR, id="wasserstein"),
    pytest.param(lambda: PSIDrift(n_bins=7), SCORE_REF, SCORE_CUR, id="psi-scores"),
    pytest.param(lambda: PSIDrift(), CLASS_REF, CLASS_CUR, id="psi-classes"),
    pytest.param(lambda: JensenShannonDrift(threshold=0.1), CLASS_REF, CLASS_CUR, id="jsd-fixed-threshold"),
    pytest.param(lambda: ChiSquareDrift(n_classes=6), CLASS_REF, CLASS_CUR, id="chi-square"),
    pytest.param(lambda: EvidentlyEmbeddingDrift("distance", dist="cosine"), EMB_REF, EMB_CUR, id="evidently-distance"),
    pytest.param(lambda: EvidentlyColumnDrift(columns=list("abcdef")), EMB_REF, EMB_CUR, id="evidently-columns"),
]


@pytest.mark.parametrize(("make", "reference", "current"), CASES)
def test_score_is_pure_and_repeatable(make: Callable[[], Detector], reference: Any, current: Any) -> None:
    detector = make().fit(reference)
    before = detector.to_dict()
    current_copy = copy.deepcopy(current)
    first = detector.score(current)
    assert detector.to_dict() == before
    assert detector.score(current) == first
    np.testing.assert_array_equal(current, current_copy)


@pytest.mark.parametrize(("make", "reference", "current"), CASES)
def test_stored_summary_round_trips(make: Callable[[], Detector], reference: Any, current: Any) -> None:
    detector = make().fit(reference)
    stored = detector.to_dict()
    json.dumps(stored, allow_nan=False)  # plain JSON, no pickle, no NaN
    for loaded in (from_dict(json.loads(json.dumps(stored))), from_bytes(to_bytes(detector))):
        assert type(loaded) is type(detector)
        assert loaded.params() == detector.params()
        assert loaded.score(current) == detector.score(current)


@pytest.mark.parametrize(("make", "reference", "current"), CASES)
def test_result_is_frozen_and_json_safe(make: Callable[[], Detector], reference: Any, current: Any) -> None:
    result = make().fit(reference).score(current)
    assert isinstance(result, DriftResult)
    json.dumps(result.to_dict(), allow_nan=False)
    with pytest.raises(AttributeError):
        result.score = 0.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        result.details["extra"] = 1  # type: ignore[index]


@pytest.mark.parametrize(("make", "reference", "current"), CASES)
def test_scoring_before_fit_names_the_fix(make: Callable[[], Detector], reference: Any, current: Any) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        make().score(current)


def test_reference_summary_is_bounded() -> None:
    big = np.random.default_rng(0).standard_normal((3000, 4))
    detector = MMDDrift(max_reference=500).fit(big)
    assert detector.to_dict()["reference"]["sample"]["shape"] == [500, 4]
    assert detector.score(big).n_reference == 500
    # Class mix and binned scores store counts only, whatever the window size.
    assert len(json.dumps(PSIDrift().fit(np.random.default_rng(0).random(100_000)).to_dict())) < 2000


def test_summary_for_another_method_is_refused() -> None:
    stored = KSDrift().fit(SCORE_REF).to_dict()
    with pytest.raises(SummaryError, match="ks"):
        WassersteinDrift.from_dict(stored)
    with pytest.raises(SummaryError, match="unknown detector method"):
        from_dict({**stored, "method": "nope"})
    with pytest.raises(SummaryError, match="not a stored detector"):
        from_bytes(b"not zlib")


def test_corrupt_summary_is_refused() -> None:
    stored = MMDDrift().fit(EMB_REF).to_dict()
    stored["reference"]["sample"]["shape"] = [7, 7]
    with pytest.raises(SummaryError, match="mmd"):
        from_dict(stored)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(lambda: MMDDrift(alpha=1.5), "alpha", id="alpha-out-of-range"),
        pytest.param(lambda: MMDDrift(seed=-1), "seed", id="negative-seed"),
        pytest.param(lambda: PCAKSDrift(correction="holm"), "correction", id="unknown-correction"),  # type: ignore[arg-type]
        pytest.param(lambda: PSIDrift(n_bins=1), "n_bins", id="one-bin"),
        pytest.param(lambda: EvidentlyEmbeddingDrift("energy"), "drift_method", id="unknown-evidently-method"),  # type: ignore[arg-type]
    ],
)
def test_bad_options_are_refused(make: Callable[[], Detector], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_feature_count_mismatch_is_refused() -> None:
    with pytest.raises(ValueError, match="features"):
        MMDDrift().fit(EMB_REF).score(EMB_CUR[:, :3])


def test_evidently_wrapper_leaves_global_numpy_random_state_alone() -> None:
    np.random.seed(123)
    expected = np.random.random()
    np.random.seed(123)
    EvidentlyEmbeddingDrift("mmd").fit(EMB_REF).score(EMB_CUR)
    assert np.random.random() == expected
