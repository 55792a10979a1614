"""Two-sample Kolmogorov–Smirnov test on one-dimensional scores (confidences, box areas, ...)."""

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
    rng_for,
)
from detectors.floor import EffectFloor

_FIT, _CURRENT = 0, 2


class KSDrift(Detector):
    """Two-sample KS test of a 1-D score distribution against the reference.

    The p-value is scipy's (exact for small samples, asymptotic for large ones). It assumes
    continuous values: with many ties (integer counts such as boxes per image) it is conservative,
    i.e. it flags less than ``alpha`` of the time and loses power; use :class:`WassersteinDrift`,
    whose permutation p-value is exact with ties, for discrete scores.

    Parameters
    ----------
    alpha
        Test level: drift when ``p_value <= alpha``.
    seed
        Seed of the reservoir and current samples.
    max_reference
        At most this many reference values are kept (a uniform sample, stored as float64:
        confidences crowd just below 1, where float32 would merge values the window keeps apart).
    max_current
        At most this many current values are compared.
    """

    method = "ks"

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        seed: int = 0,
        floor: EffectFloor | None = None,
        max_reference: int = 5000,
        max_current: int = 100_000,
    ) -> None:
        super().__init__(alpha=alpha, seed=seed, floor=floor)
        check_positive("max_reference", max_reference)
        check_positive("max_current", max_current)
        self.max_reference = max_reference
        self.max_current = max_current
        self._reference: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "seed": self.seed, "max_reference": self.max_reference, "max_current": self.max_current}

    @property
    def is_fitted(self) -> bool:
        return self._reference is not None

    def _fit(self, reference: ArrayLike) -> Self:
        """Keep a bounded, sorted sample of the 1-D ``reference``."""
        x = bounded_sample(as_vector(reference, "reference"), self.max_reference, rng_for(self.seed, _FIT))
        self._reference = np.sort(x)
        return self

    def _score(self, current: ArrayLike) -> DriftResult:
        """KS statistic and p-value of the 1-D ``current`` against the reference."""
        from scipy.stats import ks_2samp

        self._check_fitted()
        assert self._reference is not None
        y = bounded_sample(as_vector(current, "current"), self.max_current, rng_for(self.seed, _CURRENT))
        result = ks_2samp(self._reference, y, method="auto")
        p_value = float(result.pvalue)
        return DriftResult(
            method=self.method,
            score=float(result.statistic),
            p_value=p_value,
            threshold=self.alpha,
            significant=p_value <= self.alpha,
            effect_size=float(result.statistic),
            n_reference=len(self._reference),
            n_current=len(y),
            details={"reference_median": float(np.median(self._reference)), "current_median": float(np.median(y))},
        )

    def _summary(self) -> dict[str, Any]:
        assert self._reference is not None
        return {"sample": encode_array(self._reference, "float64")}

    def _load_summary(self, summary: Mapping[str, Any]) -> None:
        sample = decode_array(summary["sample"])
        if sample.ndim != 1:
            raise ValueError("sample must be 1-D")
        self._reference = np.sort(sample)
