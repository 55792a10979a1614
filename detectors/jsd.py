"""Jensen–Shannon distance between binned distributions (class mix or scores)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors._histogram import BinnedDistanceDrift
from detectors.base import FloatArray


class JensenShannonDrift(BinnedDistanceDrift):
    """Jensen–Shannon distance (base 2, in [0, 1]) between reference and window proportions.

    ``JS = sqrt((KL(p ‖ m) + KL(q ‖ m)) / 2)`` with ``m = (p + q) / 2``; unlike PSI it is bounded
    and finite with empty bins, so no smoothing is applied (it equals
    ``scipy.spatial.distance.jensenshannon(p, q, base=2)``). Bins and the calibrated threshold
    work as for :class:`PSIDrift`; the parameters are the same.

    Parameters
    ----------
    alpha
        False-alarm rate the calibrated threshold is set for.
    seed
        Seed of the calibration resamples.
    n_bins
        Number of equal-mass bins for continuous scores.
    kind
        ``"auto"`` (integer arrays are class labels), ``"categorical"`` or ``"quantile"``.
    n_classes
        Number of classes for class labels; ``None`` takes the largest reference label + 1.
    threshold
        Fixed distance threshold; ``None`` calibrates it.
    n_resamples
        Number of resamples for the calibrated threshold.
    """

    method = "jensen_shannon"

    @staticmethod
    def distance(reference_counts: ArrayLike, current_counts: ArrayLike) -> FloatArray:
        p = np.asarray(reference_counts, dtype=np.float64)
        q = np.asarray(current_counts, dtype=np.float64)
        p = p / p.sum(axis=-1, keepdims=True)
        q = q / q.sum(axis=-1, keepdims=True)
        m = (p + q) / 2.0
        with np.errstate(divide="ignore", invalid="ignore"):
            # 0 · log(0 / m) is 0: empty bins contribute nothing.
            kl_p = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=-1)
            kl_q = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=-1)
        return np.asarray(np.sqrt(np.maximum((kl_p + kl_q) / 2.0, 0.0)), dtype=np.float64)
