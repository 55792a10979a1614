"""Bins fixed at fit time, and thresholds for histogram distances calibrated by resampling.

Shared by the class-mix and binned-score detectors (chi-square, PSI, Jensen–Shannon). A summary
is the bin definition plus the reference counts: a few dozen numbers whatever the window size.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import (
    Detector,
    DriftResult,
    FloatArray,
    IntArray,
    as_labels,
    as_vector,
    check_positive,
    rng_for,
)
from detectors.floor import EffectFloor

BinKind = Literal["categorical", "quantile"]


@dataclass(frozen=True)
class Bins:
    """How values map to bins; fixed when the reference is fitted.

    ``categorical``: classes ``0 .. n_classes - 1`` plus a last bin for any class index the
    reference never had room for (a new class is drift evidence, not an error).
    ``quantile``: ``edges`` are the reference quantiles between bins; the outer bins are open,
    so every value falls in some bin.
    """

    kind: BinKind
    n_classes: int = 0
    edges: tuple[float, ...] = ()

    @property
    def size(self) -> int:
        return self.n_classes + 1 if self.kind == "categorical" else len(self.edges) + 1

    def count(self, values: ArrayLike, name: str) -> IntArray:
        """Counts of ``values`` per bin."""
        if self.kind == "categorical":
            labels = np.minimum(as_labels(values, name), self.n_classes)
            return np.bincount(labels, minlength=self.size).astype(np.int64)
        index = np.searchsorted(np.asarray(self.edges), as_vector(values, name, min_rows=1), side="right")
        return np.bincount(index, minlength=self.size).astype(np.int64)

    def labels(self) -> list[str]:
        """Readable bin names for result details."""
        if self.kind == "categorical":
            return [str(c) for c in range(self.n_classes)] + ["unseen"]
        bounds = ["-inf", *(f"{e:.6g}" for e in self.edges), "inf"]
        return [f"({lo}, {hi}]" for lo, hi in pairwise(bounds)]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "n_classes": self.n_classes, "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Bins:
        kind = data["kind"]
        if kind not in ("categorical", "quantile"):
            raise ValueError(f"unknown bin kind {kind!r}")
        return cls(kind=kind, n_classes=int(data["n_classes"]), edges=tuple(float(e) for e in data["edges"]))


def fit_bins(values: ArrayLike, kind: Literal["auto", "categorical", "quantile"], n_bins: int, n_classes: int | None) -> Bins:
    """Bins for ``values``: the class set, or ``n_bins`` equal-mass bins of the reference.

    ``auto`` takes integer arrays as class labels and anything else as continuous scores. Equal-mass
    edges that coincide (heavily tied values) are merged, so there can be fewer than ``n_bins``.
    """
    arr = np.asarray(values)
    if kind == "auto":
        kind = "categorical" if np.issubdtype(arr.dtype, np.integer) else "quantile"
    if kind == "categorical":
        labels = as_labels(arr, "reference")
        known = int(labels.max()) + 1
        if n_classes is not None and n_classes < known:
            raise ValueError(f"reference has class {known - 1} but n_classes={n_classes}")
        return Bins("categorical", n_classes=n_classes if n_classes is not None else known)
    x = as_vector(arr, "reference")
    edges = np.unique(np.quantile(x, np.arange(1, n_bins) / n_bins))
    return Bins("quantile", edges=tuple(float(e) for e in edges))


def null_threshold(
    statistic: Callable[[IntArray, IntArray], FloatArray],
    reference_counts: IntArray,
    n_current: int,
    alpha: float,
    n_resamples: int,
    rng: np.random.Generator,
) -> float:
    """The ``1 - alpha`` quantile of ``statistic`` when nothing has shifted.

    Both windows are redrawn from the reference's bin proportions (a parametric bootstrap of the
    fixed bins): ``n_reference`` counts for the reference and ``n_current`` for the window, as
    NannyML calibrates thresholds on reference chunks, but for the actual window size. With equal-
    mass bins the reference's counts are equal by construction and its sampling noise sits in the
    edges instead; the multinomial redraw has the same variance to first order.
    ``statistic`` takes count matrices (rows = resamples) and returns one value per row.
    """
    proportions = reference_counts / reference_counts.sum()
    ref = rng.multinomial(int(reference_counts.sum()), proportions, size=n_resamples)
    cur = rng.multinomial(n_current, proportions, size=n_resamples)
    return float(np.quantile(statistic(ref, cur), 1.0 - alpha, method="higher"))


def smoothed_proportions(counts: ArrayLike) -> FloatArray:
    """Bin proportions with half a pseudo-count per bin: ``(c + 1/2) / (n + k/2)``, row-wise.

    This is the posterior mean under Jeffreys' Dirichlet(1/2) prior: it keeps logarithms finite
    for empty bins without an arbitrary epsilon, and its effect shrinks as ``1/n``.
    """
    c = np.asarray(counts, dtype=np.float64)
    return (c + 0.5) / (c.sum(axis=-1, keepdims=True) + 0.5 * c.shape[-1])


class BinnedDistanceDrift(Detector):
    """A distance between binned reference and window proportions, with a calibrated threshold.

    Subclasses define :meth:`distance`. The threshold is either given (``threshold=``, e.g. the
    conventional PSI 0.1 / 0.25) or calibrated to a false-alarm rate of ``alpha`` by
    :func:`null_threshold` for the window's size, from the reference bins alone. There is no
    p-value: the decision is ``score > threshold``.
    """

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        seed: int = 0,
        floor: EffectFloor | None = None,
        n_bins: int = 10,
        kind: Literal["auto", "categorical", "quantile"] = "auto",
        n_classes: int | None = None,
        threshold: float | None = None,
        n_resamples: int = 1000,
    ) -> None:
        super().__init__(alpha=alpha, seed=seed, floor=floor)
        if n_bins < 2:
            raise ValueError(f"n_bins must be at least 2, got {n_bins}")
        if kind not in ("auto", "categorical", "quantile"):
            raise ValueError(f"kind must be 'auto', 'categorical' or 'quantile', got {kind!r}")
        check_positive("n_classes", n_classes, allow_none=True)
        check_positive("n_resamples", n_resamples)
        if threshold is not None and not threshold >= 0:
            raise ValueError(f"threshold must be non-negative, got {threshold}")
        self.n_bins = n_bins
        self.kind: Literal["auto", "categorical", "quantile"] = kind
        self.n_classes = n_classes
        self.threshold = threshold
        self.n_resamples = n_resamples
        self._bins: Bins | None = None
        self._counts: IntArray | None = None

    @staticmethod
    @abc.abstractmethod
    def distance(reference_counts: ArrayLike, current_counts: ArrayLike) -> FloatArray:
        """Row-wise distance between count vectors (rows = resamples, columns = bins)."""

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "seed": self.seed,
            "n_bins": self.n_bins,
            "kind": self.kind,
            "n_classes": self.n_classes,
            "threshold": self.threshold,
            "n_resamples": self.n_resamples,
        }

    @property
    def is_fitted(self) -> bool:
        return self._counts is not None

    def _fit(self, reference: ArrayLike) -> Self:
        """Fix the bins (class set or reference quantiles) and count the reference in them."""
        self._bins = fit_bins(reference, self.kind, self.n_bins, self.n_classes)
        self._counts = self._bins.count(reference, "reference")
        return self

    def _score(self, current: ArrayLike) -> DriftResult:
        """Distance of the window's binned proportions from the reference's."""
        self._check_fitted()
        assert self._bins is not None and self._counts is not None
        cur = self._bins.count(current, "current")
        observed = float(self.distance(self._counts[None], cur[None])[0])
        if self.threshold is not None:
            threshold, how = self.threshold, "fixed"
        else:
            threshold = null_threshold(
                self.distance, self._counts, int(cur.sum()), self.alpha, self.n_resamples, rng_for(self.seed, 3)
            )
            how = "calibrated"
        return DriftResult(
            method=self.method,
            score=observed,
            p_value=None,
            threshold=threshold,
            significant=observed > threshold,
            effect_size=observed,
            n_reference=int(self._counts.sum()),
            n_current=int(cur.sum()),
            details={
                "threshold_method": how,
                "bins": self._bins.labels(),
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
        if counts.shape != (bins.size,):
            raise ValueError("counts do not match the bins")
        self._bins, self._counts = bins, counts
