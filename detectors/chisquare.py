"""Chi-square test of homogeneity on predicted-class counts (class mix)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from detectors._histogram import Bins, fit_bins
from detectors.base import Detector, DriftResult, FloatArray, IntArray, check_positive, permutation_p_value, rng_for
from detectors.floor import EffectFloor

_PERMUTE = 3


class ChiSquareDrift(Detector):
    """Pearson chi-square test that reference and window share one class distribution.

    The class set is fixed at fit: ``n_classes`` classes (default: the largest reference label
    + 1) plus one "unseen" bin for labels beyond it. Classes empty in both windows are dropped
    before testing, since they carry no information and would only add degrees of freedom.

    The asymptotic chi-square p-value is used when every expected count is at least
    ``min_expected`` (Cochran's rule). Otherwise the approximation is unreliable, so the p-value
    is computed by Monte Carlo instead: ``n_resamples`` tables redrawn with the observed margins
    (the exact conditional null of a permutation of labels between windows), in the
    ``(1 + #{X²_perm >= X²_obs}) / (1 + B)`` form. ``details["p_value_method"]`` says which.

    Parameters
    ----------
    alpha
        Test level: drift when ``p_value <= alpha``.
    seed
        Seed of the Monte Carlo resamples.
    n_classes
        Number of classes; ``None`` takes the largest reference label + 1.
    min_expected
        Smallest expected count for the asymptotic p-value.
    n_resamples
        Number of Monte Carlo tables when the expected counts are small.
    """

    method = "chi_square"

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        seed: int = 0,
        floor: EffectFloor | None = None,
        n_classes: int | None = None,
        min_expected: float = 5.0,
        n_resamples: int = 2000,
    ) -> None:
        super().__init__(alpha=alpha, seed=seed, floor=floor)
        check_positive("n_classes", n_classes, allow_none=True)
        check_positive("n_resamples", n_resamples)
        self.n_classes = n_classes
        self.min_expected = float(min_expected)
        self.n_resamples = n_resamples
        self._bins: Bins | None = None
        self._counts: IntArray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "seed": self.seed,
            "n_classes": self.n_classes,
            "min_expected": self.min_expected,
            "n_resamples": self.n_resamples,
        }

    @property
    def is_fitted(self) -> bool:
        return self._counts is not None

    def _fit(self, reference: ArrayLike) -> Self:
        """Fix the class set and count the reference's integer labels."""
        self._bins = fit_bins(reference, "categorical", 0, self.n_classes)
        self._counts = self._bins.count(reference, "reference")
        return self

    def _score(self, current: ArrayLike) -> DriftResult:
        """Chi-square statistic and p-value of the window's class counts against the reference's."""
        from scipy.stats import chi2

        self._check_fitted()
        assert self._bins is not None and self._counts is not None
        cur = self._bins.count(current, "current")
        keep = (self._counts + cur) > 0
        table = np.vstack([self._counts[keep], cur[keep]])
        observed = float(_chi_square(table[None, 0], table[None, 1])[0])
        dof = int(keep.sum()) - 1
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
        if dof == 0:
            p_value, how = 1.0, "single class"
        elif expected.min() >= self.min_expected:
            p_value, how = float(chi2.sf(observed, dof)), "asymptotic"
        else:
            rng = rng_for(self.seed, _PERMUTE)
            # Tables with the observed margins: which labelled samples land in the current window.
            cur_null = rng.multivariate_hypergeometric(table.sum(axis=0), int(cur.sum()), size=self.n_resamples)
            null = _chi_square(table.sum(axis=0) - cur_null, cur_null)
            p_value, how = permutation_p_value(observed, null), "monte carlo"
        return DriftResult(
            method=self.method,
            score=observed,
            p_value=p_value,
            threshold=self.alpha,
            significant=p_value <= self.alpha,
            effect_size=total_variation(self._counts, cur),
            n_reference=int(self._counts.sum()),
            n_current=int(cur.sum()),
            details={
                "dof": dof,
                "p_value_method": how,
                "classes": self._bins.labels(),
                "reference_counts": self._counts.tolist(),
                "current_counts": cur.tolist(),
            },
        )

    def _summary(self) -> dict[str, Any]:
        assert self._bins is not None and self._counts is not None
        return {"bins": self._bins.to_dict(), "counts": self._counts.tolist()}

    def _load_summary(self, summary: Mapping[str, Any]) -> None:
        bins = Bins.from_dict(summary["bins"])
        counts = np.asarray(summary["counts"], dtype=np.int64)
        if bins.kind != "categorical" or counts.shape != (bins.size,):
            raise ValueError("counts do not match the class bins")
        self._bins, self._counts = bins, counts


def total_variation(reference_counts: IntArray, current_counts: IntArray) -> float:
    """Half the L1 distance between the two class mixes: the share of predictions that would have
    to change class to turn one into the other, in [0, 1]. Unlike X², it does not grow with the
    window, so it serves as the effect size."""
    ref = reference_counts / max(int(reference_counts.sum()), 1)
    cur = current_counts / max(int(current_counts.sum()), 1)
    return float(0.5 * np.abs(ref - cur).sum())


def _chi_square(ref: IntArray | FloatArray, cur: IntArray | FloatArray) -> FloatArray:
    """Pearson X² of 2 × k tables given as row-stacked reference and current counts."""
    ref = np.asarray(ref, dtype=np.float64)
    cur = np.asarray(cur, dtype=np.float64)
    col = ref + cur
    n_ref, n_cur = ref.sum(axis=1, keepdims=True), cur.sum(axis=1, keepdims=True)
    total = n_ref + n_cur
    with np.errstate(invalid="ignore", divide="ignore"):
        e_ref, e_cur = col * n_ref / total, col * n_cur / total
        terms = np.where(col > 0, (ref - e_ref) ** 2 / e_ref + (cur - e_cur) ** 2 / e_cur, 0.0)
    return terms.sum(axis=1)
