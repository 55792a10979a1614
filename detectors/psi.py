"""Population stability index on bins fixed at fit time."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from detectors._histogram import BinnedDistanceDrift, smoothed_proportions
from detectors.base import FloatArray


class PSIDrift(BinnedDistanceDrift):
    """PSI = Σ (q - p) · ln(q / p) over bins, p the reference and q the window proportions.

    Bins are fixed at fit: the class set for integer labels (class mix), or ``n_bins``
    equal-mass bins of the reference for continuous scores. ``n_bins`` is honoured (Evidently's
    PSI re-bins every window and ignores it); only coinciding quantiles of tied data are merged.
    Empty bins get half a pseudo-count (Jeffreys' prior, see ``smoothed_proportions``) instead of
    an arbitrary epsilon.

    PSI has no p-value. Its threshold is either stated (``threshold=0.1`` "moderate",
    ``0.25`` "major" by convention, which on small windows alarms on noise alone) or, by default,
    calibrated so that a window of the observed size drawn from the reference exceeds it with
    probability ``alpha``: ``n_resamples`` reference/window pairs are resampled from the fixed
    bins and the threshold is their ``1 - alpha`` quantile.

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
        Labels beyond it share an "unseen" bin.
    threshold
        Fixed PSI threshold; ``None`` calibrates it.
    n_resamples
        Number of resamples for the calibrated threshold.
    """

    method = "psi"

    @staticmethod
    def distance(reference_counts: ArrayLike, current_counts: ArrayLike) -> FloatArray:
        p = smoothed_proportions(reference_counts)
        q = smoothed_proportions(current_counts)
        return np.asarray(((q - p) * np.log(q / p)).sum(axis=-1), dtype=np.float64)
