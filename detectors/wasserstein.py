"""Wasserstein-1 distance between 1-D score distributions, with a permutation p-value."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import (
    Detector,
    DriftResult,
    FloatArray,
    as_vector,
    bounded_sample,
    check_positive,
    decode_array,
    encode_array,
    group_masks,
    permutation_p_value,
    rng_for,
)
from detectors.floor import EffectFloor

_FIT, _CURRENT, _PERMUTE = 0, 2, 3


class WassersteinDrift(Detector):
    """Earth mover's (Wasserstein-1) distance of a 1-D score, tested by permutation.

    ``W1 = ∫ |F_ref(t) - F_cur(t)| dt`` is computed on the sorted pooled sample, where both
    empirical CDFs are cumulative sums of group indicators. All permutations share the one sort,
    so ``B`` permutations cost ``O(B · n)`` after an ``O(n log n)`` sort. The p-value is exact
    for any distribution, ties included (boxes per image, rounded confidences).

    ``score`` is W1 in the score's own units; ``details["normalised"]`` divides it by the
    reference standard deviation (Evidently's ``wasserstein`` statistic, for comparison).

    Parameters
    ----------
    alpha
        Test level: drift when ``p_value <= alpha``.
    seed
        Seed of the reservoir and current samples and of the permutations.
    n_permutations
        Number of relabellings for the p-value.
    max_reference
        At most this many reference values are kept (a uniform sample, stored as float64:
        confidences crowd just below 1, where float32 would merge values the window keeps apart).
    max_current
        At most this many current values are compared; memory is ``8 · n_permutations · n`` bytes.
    """

    method = "wasserstein"

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        seed: int = 0,
        floor: EffectFloor | None = None,
        n_permutations: int = 200,
        max_reference: int = 5000,
        max_current: int = 5000,
    ) -> None:
        super().__init__(alpha=alpha, seed=seed, floor=floor)
        check_positive("n_permutations", n_permutations)
        check_positive("max_reference", max_reference)
        check_positive("max_current", max_current)
        self.n_permutations = n_permutations
        self.max_reference = max_reference
        self.max_current = max_current
        self._reference: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "seed": self.seed,
            "n_permutations": self.n_permutations,
            "max_reference": self.max_reference,
            "max_current": self.max_current,
        }

    @property
    def is_fitted(self) -> bool:
        return self._reference is not None

    def _fit(self, reference: ArrayLike) -> Self:
        """Keep a bounded sample of the 1-D ``reference``."""
        x = bounded_sample(as_vector(reference, "reference"), self.max_reference, rng_for(self.seed, _FIT))
        self._reference = np.sort(x)
        return self

    def _score(self, current: ArrayLike) -> DriftResult:
        """W1 distance of the 1-D ``current`` from the reference and its permutation p-value."""
        self._check_fitted()
        assert self._reference is not None
        y = bounded_sample(as_vector(current, "current"), self.max_current, rng_for(self.seed, _CURRENT))
        m, n = len(self._reference), len(y)
        pooled = np.concatenate([self._reference, y])
        order = np.argsort(pooled, kind="stable")
        gaps = np.diff(pooled[order])
        masks = group_masks(m, n, self.n_permutations, rng_for(self.seed, _PERMUTE))[:, order]
        # CDF difference just after each sorted point: reference share minus current share so far.
        cdf_gap = np.cumsum(masks / m - (1.0 - masks) / n, axis=1)[:, :-1]
        stats = np.abs(cdf_gap) @ gaps
        observed = float(stats[0])
        p_value = permutation_p_value(observed, stats[1:])
        spread = float(np.std(self._reference))
        return DriftResult(
            method=self.method,
            score=observed,
            p_value=p_value,
            threshold=self.alpha,
            significant=p_value <= self.alpha,
            effect_size=observed,
            n_reference=m,
            n_current=n,
            details={
                "normalised": observed / spread if spread > 0 else None,
                "n_permutations": self.n_permutations,
            },
        )

    def _summary(self) -> dict[str, Any]:
        assert self._reference is not None
        return {"sample": encode_array(self._reference, "float64")}

    def _load_summary(self, summary: Mapping[str, Any]) -> None:
        sample = decode_array(summary["sample"])
        if sample.ndim != 1:
            raise ValueError("sample must be 1-D")
        self._reference = np.sort(sample)
