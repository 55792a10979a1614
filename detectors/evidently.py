"""Evidently's embedding-drift methods and column drift behind the cvmon interface, for comparison.

Evidently (0.7, ``evidently.legacy``) is imported inside the methods that call it: it takes
seconds to import and is only needed by users who ask for these detectors.

What the wrappers change and why:

* Evidently's bootstrapped methods call ``np.random.seed(i)``, resetting numpy's *global*
  random state; the wrappers restore it, so calling them has no effect on the caller's randomness.
* Evidently's ``model`` method adds a column to the frames it is given; the wrappers hand it
  fresh frames, so scoring stays pure.
* Importing evidently emits DeprecationWarnings from its own code (``numpy.core``, litestar);
  they are silenced for the import only, since the test suite turns warnings into errors.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import (
    Detector,
    DriftResult,
    FloatArray,
    as_matrix,
    bounded_sample,
    check_positive,
    decode_array,
    encode_array,
    rng_for,
    stored_precision,
)
from detectors.floor import EffectFloor

EmbeddingMethod = Literal["model", "mmd", "ratio", "distance"]
_BOOTSTRAPPED: frozenset[str] = frozenset({"model", "mmd", "distance"})
_FIT, _CURRENT = 0, 2


class EvidentlyEmbeddingDrift(Detector):
    """Evidently's embedding-drift methods (``model``, ``mmd``, ``ratio``, ``distance``).

    ``score``, ``is_drift`` and the threshold are Evidently's own; there is never a p-value.
    With ``bootstrap=True`` (the default here, not Evidently's) the decision compares the score
    with the ``1 - alpha`` quantile of a resampled null, so ``alpha`` means something:

    ``model``
        SGD logistic regression on a 50/50 split; null = AUC of random scores on the test half.
        A valid level-``alpha`` test: holds the stated rate.
    ``mmd``
        Full RBF-kernel MMD² (bandwidth from the pooled windows); the null bootstraps the
        *reference only*, with replacement. Duplicated rows inflate the bootstrapped MMD², so the
        rate holds but conservatively (fewer alarms than ``alpha``, less power). Quadratic in the
        window size: slow on large windows.
    ``distance``
        Distance between mean embeddings; the null bootstraps the reference with sample sizes of
        ``m²/(m+n)`` and ``mn/(m+n)`` instead of ``m`` and ``n``, which widens it: conservative.
    ``ratio``
        Share of components whose normalised Wasserstein distance exceeds 0.1, against a fixed
        share of 0.2. **Not a test: ``alpha`` is ignored and the false-alarm rate is not
        controlled.** It depends on the window size: measured on N(0, I) windows, every no-shift
        window of 200 per side is flagged, none of 1 000 per side; in between it is a coin toss.

    Without the bootstrap, ``model`` and ``mmd`` compare with fixed constants (AUC 0.55,
    MMD² 0.015) whose false-alarm rate likewise depends on the window size and the embedding.

    Parameters
    ----------
    drift_method
        Evidently's method: ``"model"``, ``"mmd"``, ``"ratio"`` or ``"distance"``.
    alpha
        Passed to Evidently as ``quantile_probability = 1 - alpha`` for the bootstrapped methods.
    seed
        Seed of the reservoir and current samples (Evidently's own randomness is fixed inside it).
    bootstrap
        Use Evidently's bootstrap threshold (ignored for ``ratio``, which has none).
    pca_components
        Reduce both windows to this many PCA components first (Evidently's option).
    max_reference, max_current
        Bounds on the rows kept / compared, as for the cvmon detectors.
    options
        Further keyword options of Evidently's method, e.g. ``dist="cosine"`` for ``distance``
        or ``component_stattest="ks"`` for ``ratio``; JSON-safe values only.
    """

    method = "evidently_embedding"

    def __init__(
        self,
        drift_method: EmbeddingMethod = "model",
        *,
        alpha: float = 0.05,
        seed: int = 0,
        floor: EffectFloor | None = None,
        bootstrap: bool = True,
        pca_components: int | None = None,
        max_reference: int = 5000,
        max_current: int = 5000,
        **options: float | str | bool | None,
    ) -> None:
        super().__init__(alpha=alpha, seed=seed, floor=floor)
        if drift_method not in ("model", "mmd", "ratio", "distance"):
            raise ValueError(f"drift_method must be 'model', 'mmd', 'ratio' or 'distance', got {drift_method!r}")
        check_positive("pca_components", pca_components, allow_none=True)
        check_positive("max_reference", max_reference)
        check_positive("max_current", max_current)
        self.drift_method: EmbeddingMethod = drift_method
        self.bootstrap = bool(bootstrap)
        self.pca_components = pca_components
        self.max_reference = max_reference
        self.max_current = max_current
        self.options = dict(options)
        self._reference: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "drift_method": self.drift_method,
            "alpha": self.alpha,
            "seed": self.seed,
            "bootstrap": self.bootstrap,
            "pca_components": self.pca_components,
            "max_reference": self.max_reference,
            "max_current": self.max_current,
            **self.options,
        }

    @property
    def is_fitted(self) -> bool:
        return self._reference is not None

    def _fit(self, reference: ArrayLike) -> Self:
        """Keep a bounded sample of ``reference`` (n × d) for Evidently to compare against."""
        x = bounded_sample(as_matrix(reference, "reference"), self.max_reference, rng_for(self.seed, _FIT))
        self._reference = stored_precision(x)
        return self

    def _evidently_method(self) -> Any:
        with _quiet_import():
            from evidently.legacy.metrics.data_drift import embedding_drift_methods as methods
        kwargs: dict[str, Any] = {"pca_components": self.pca_components, **self.options}
        if self.drift_method in _BOOTSTRAPPED and self.bootstrap:
            kwargs.update(bootstrap=True, quantile_probability=1.0 - self.alpha)
        return getattr(methods, self.drift_method)(**kwargs)

    def _score(self, current: ArrayLike) -> DriftResult:
        """Run Evidently's method on the reference sample and ``current`` (n × d)."""
        import pandas as pd

        self._check_fitted()
        assert self._reference is not None
        y = as_matrix(current, "current")
        if y.shape[1] != self._reference.shape[1]:
            raise ValueError(f"current has {y.shape[1]} features; the reference has {self._reference.shape[1]}")
        y = stored_precision(bounded_sample(y, self.max_current, rng_for(self.seed, _CURRENT)))
        method = self._evidently_method()
        with _global_numpy_state():
            value, drifted, _ = method(pd.DataFrame(y), pd.DataFrame(self._reference.copy()))
        uses_bootstrap = self.drift_method in _BOOTSTRAPPED and self.bootstrap
        return DriftResult(
            method=f"evidently_{self.drift_method}",
            score=float(value),
            p_value=None,
            # Evidently does not return the bootstrap quantile it compared with.
            threshold=None if uses_bootstrap else float(method.threshold),
            significant=bool(drifted),
            effect_size=float(value),
            n_reference=len(self._reference),
            n_current=len(y),
            details={"bootstrap": uses_bootstrap},
        )

    def _summary(self) -> dict[str, Any]:
        assert self._reference is not None
        return {"sample": encode_array(self._reference)}

    def _load_summary(self, summary: Mapping[str, Any]) -> None:
        sample = decode_array(summary["sample"])
        if sample.ndim != 2:
            raise ValueError("sample must be 2-D")
        self._reference = sample


class EvidentlyColumnDrift(Detector):
    """Evidently's per-column drift on numeric metadata (cohort fields, image statistics).

    Each column gets Evidently's stattest (by default Evidently's own choice: KS at p ≤ 0.05 for
    a reference of at most 1 000 rows, normalised Wasserstein distance ≥ 0.1 above that, chi-square
    or z-test for five or fewer distinct values). The window is flagged when the share of drifted
    columns reaches ``drift_share`` (Evidently's dataset drift). ``score`` is that share.

    Honesty: with a single KS-tested column the false-alarm rate is the stated 5 %; with several
    columns and ``drift_share`` above ``1/k`` it is lower. The Wasserstein rule used for larger
    references is a fixed distance, not a test: its false-alarm rate falls towards zero as windows
    grow and it is not tied to ``alpha``, which is therefore ignored; use :class:`KSDrift` or
    :class:`WassersteinDrift` per column for a stated rate.

    Parameters
    ----------
    alpha
        Unused by Evidently's decision; kept for the common interface.
    seed
        Seed of the reservoir and current samples.
    stattest
        Evidently stattest name for every column (e.g. ``"ks"``, ``"wasserstein"``, ``"psi"``);
        ``None`` lets Evidently choose per column.
    stattest_threshold
        Threshold passed to the stattest; ``None`` uses its default.
    drift_share
        Share of drifted columns at which the window is flagged.
    columns
        Column names, for the details; default ``"0", "1", ...``.
    max_reference, max_current
        Bounds on the rows kept / compared.
    """

    method = "evidently_columns"

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        seed: int = 0,
        floor: EffectFloor | None = None,
        stattest: str | None = None,
        stattest_threshold: float | None = None,
        drift_share: float = 0.5,
        columns: Sequence[str] | None = None,
        max_reference: int = 5000,
        max_current: int = 5000,
    ) -> None:
        super().__init__(alpha=alpha, seed=seed, floor=floor)
        if not 0.0 < drift_share <= 1.0:
            raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
        check_positive("max_reference", max_reference)
        check_positive("max_current", max_current)
        self.stattest = stattest
        self.stattest_threshold = stattest_threshold
        self.drift_share = drift_share
        self.columns = None if columns is None else [str(c) for c in columns]
        self.max_reference = max_reference
        self.max_current = max_current
        self._reference: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "seed": self.seed,
            "stattest": self.stattest,
            "stattest_threshold": self.stattest_threshold,
            "drift_share": self.drift_share,
            "columns": self.columns,
            "max_reference": self.max_reference,
            "max_current": self.max_current,
        }

    @property
    def is_fitted(self) -> bool:
        return self._reference is not None

    def _fit(self, reference: ArrayLike) -> Self:
        """Keep a bounded sample of ``reference``: (n × k) columns, or one 1-D column."""
        x = _columns(reference, "reference")
        if self.columns is not None and len(self.columns) != x.shape[1]:
            raise ValueError(f"{len(self.columns)} column names for {x.shape[1]} columns")
        x = bounded_sample(x, self.max_reference, rng_for(self.seed, _FIT))
        self._reference = stored_precision(x)
        return self

    def _score(self, current: ArrayLike) -> DriftResult:
        """Evidently's drift decision per column and the share of drifted columns."""
        import pandas as pd

        self._check_fitted()
        assert self._reference is not None
        with _quiet_import():
            from evidently.legacy.calculations.stattests import get_stattest
            from evidently.legacy.core import ColumnType
        y = _columns(current, "current")
        if y.shape[1] != self._reference.shape[1]:
            raise ValueError(f"current has {y.shape[1]} columns; the reference has {self._reference.shape[1]}")
        y = stored_precision(bounded_sample(y, self.max_current, rng_for(self.seed, _CURRENT)))
        names = self.columns or [str(i) for i in range(y.shape[1])]
        tests, scores, drifted = [], [], []
        for i in range(y.shape[1]):
            ref_col, cur_col = pd.Series(self._reference[:, i]), pd.Series(y[:, i])
            test = get_stattest(ref_col, cur_col, ColumnType.Numerical, self.stattest)
            result = test(ref_col, cur_col, ColumnType.Numerical, self.stattest_threshold)
            tests.append(test.name)
            scores.append(float(result.drift_score))
            drifted.append(bool(result.drifted))
        share = sum(drifted) / len(drifted)
        return DriftResult(
            method=self.method,
            score=share,
            p_value=None,
            threshold=self.drift_share,
            significant=share >= self.drift_share,
            effect_size=share,
            n_reference=len(self._reference),
            n_current=len(y),
            details={"columns": names, "stattests": tests, "column_scores": scores, "drifted_columns": [
                n for n, d in zip(names, drifted, strict=True) if d
            ]},
        )

    def _summary(self) -> dict[str, Any]:
        assert self._reference is not None
        return {"sample": encode_array(self._reference)}

    def _load_summary(self, summary: Mapping[str, Any]) -> None:
        sample = decode_array(summary["sample"])
        if sample.ndim != 2:
            raise ValueError("sample must be 2-D")
        self._reference = sample


def _columns(values: ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    return as_matrix(arr[:, None] if arr.ndim == 1 else arr, name)


@contextlib.contextmanager
def _quiet_import() -> Iterator[None]:
    # Only DeprecationWarnings (evidently's numpy.core use, litestar's renames), only while importing.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


@contextlib.contextmanager
def _global_numpy_state() -> Iterator[None]:
    state = np.random.get_state()
    try:
        yield
    finally:
        np.random.set_state(state)
