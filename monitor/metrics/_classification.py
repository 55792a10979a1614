"""Classification metrics from a mergeable count state.

The state of a window is its confusion counts (sparse: only the non-zero cells, so a
1 000-class model with an hour of traffic stores a few thousand numbers, not a million) and a
histogram of the rank of the true label among the class probabilities (for top-k accuracy).
States of hours add up to the state of a day; every metric is a function of the state alone.

Definitions follow scikit-learn, the oracle of the tests: per-class precision, recall and F1
are ``precision_recall_fscore_support(..., labels=range(C), zero_division=nan)`` with ``None``
where scikit-learn gives NaN; macro and weighted averages skip undefined values exactly as
scikit-learn does with ``zero_division=nan`` (including its fall-back to an unweighted mean
when every defined value has zero support); top-k accuracy ranks ties as
``top_k_accuracy_score`` does (the higher class index first).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._codec import add_arrays, pack, readonly, unpack
from ._scan import RANK_CAP, RowScan, check_labels, scan_probabilities

_KIND: Final = "classification"


@dataclass(frozen=True, eq=False, slots=True)
class ClassificationState:
    """Mergeable counts of one classification window.

    Attributes
    ----------
    num_classes
        Number of classes ``C``; class indices are ``0 .. C-1``.
    cells
        Sorted non-zero confusion cells, encoded ``true * C + predicted`` (int64).
    cell_counts
        Count of each cell (int64).
    rank_counts
        ``rank_counts[r]``: samples whose true label had ``r`` classes ranked above it, for
        ``r < RANK_CAP``; the last entry counts the rest. All zero when the window was given
        predicted classes only (then top-k accuracy is undefined).
    """

    num_classes: int
    cells: NDArray[np.int64]
    cell_counts: NDArray[np.int64]
    rank_counts: NDArray[np.int64]

    @property
    def n(self) -> int:
        """Number of labelled samples in the window."""
        return int(self.cell_counts.sum())

    @classmethod
    def empty(cls, num_classes: int) -> ClassificationState:
        """The state of a window without samples (the identity of :meth:`merge`)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        return cls(
            num_classes,
            readonly(np.zeros(0, dtype=np.int64)),
            readonly(np.zeros(0, dtype=np.int64)),
            readonly(np.zeros(RANK_CAP + 1, dtype=np.int64)),
        )

    @classmethod
    def merge(cls, *states: ClassificationState) -> ClassificationState:
        """The state of the union of the windows (exact, associative and commutative)."""
        if not states:
            raise ValueError("merge needs at least one state")
        num_classes = states[0].num_classes
        if any(s.num_classes != num_classes for s in states):
            raise ValueError(f"cannot merge states of {sorted({s.num_classes for s in states})} classes")
        cells, counts = _sum_cells(
            np.concatenate([s.cells for s in states]), np.concatenate([s.cell_counts for s in states])
        )
        ranks = add_arrays([s.rank_counts for s in states])
        return cls(num_classes, readonly(cells), readonly(counts), ranks)

    def widen(self, num_classes: int) -> ClassificationState:
        """The same counts over a class list that grew by appending classes.

        Samples counted before the new classes existed were neither labelled nor predicted as
        them, so every cell keeps its count: widening is exact, and states from before and after
        a model gained classes merge.
        """
        if num_classes < self.num_classes:
            raise ValueError(f"cannot narrow a state of {self.num_classes} classes to {num_classes}")
        if num_classes == self.num_classes:
            return self
        true_idx, pred_idx = np.divmod(self.cells, self.num_classes)
        cells = readonly(true_idx * num_classes + pred_idx)  # the order of cells is kept
        return ClassificationState(num_classes, cells, self.cell_counts, self.rank_counts)

    def confusion_matrix(self) -> NDArray[np.int64]:
        """Dense ``C × C`` counts, rows true class, columns predicted class."""
        c = self.num_classes
        dense = np.zeros(c * c, dtype=np.int64)
        dense[self.cells] = self.cell_counts
        return dense.reshape(c, c)

    def to_bytes(self) -> bytes:
        """Compact, versioned bytes (see :mod:`monitor.metrics._codec`); no pickle."""
        return pack(
            _KIND,
            {"num_classes": self.num_classes, "rank_cap": RANK_CAP},
            {"cells": self.cells, "cell_counts": self.cell_counts, "rank_counts": self.rank_counts},
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> ClassificationState:
        """Read a state written by :meth:`to_bytes`."""
        meta, arrays = unpack(data, _KIND, required=("cells", "cell_counts", "rank_counts"))
        if meta.get("rank_cap") != RANK_CAP:
            raise ValueError(f"state counts ranks up to {meta.get('rank_cap')}, this cvmon up to {RANK_CAP}")
        return cls(int(meta["num_classes"]), arrays["cells"], arrays["cell_counts"], arrays["rank_counts"])


@dataclass(frozen=True, slots=True)
class ClassMetrics:
    """One class, one-vs-rest. ``None`` where the value is undefined (0 / 0)."""

    precision: float | None
    recall: float | None
    f1: float | None
    #: samples whose true class is this one
    support: int
    #: samples predicted as this class
    predicted: int


@dataclass(frozen=True, slots=True)
class AveragedMetrics:
    """Precision, recall and F1 averaged over classes (undefined classes skipped)."""

    precision: float | None
    recall: float | None
    f1: float | None


@dataclass(frozen=True, slots=True)
class ClassificationMetrics:
    """Everything :func:`classification_metrics` derives from a state."""

    n: int
    accuracy: float | None
    #: k -> fraction of samples whose true label is among the k most probable classes
    top_k_accuracy: Mapping[int, float | None]
    #: indexed by class
    per_class: tuple[ClassMetrics, ...]
    macro: AveragedMetrics
    weighted: AveragedMetrics
    #: rows true class, columns predicted class
    confusion_matrix: NDArray[np.int64]


def classification_state(
    labels: ArrayLike,
    probabilities: ArrayLike | None = None,
    *,
    predictions: ArrayLike | None = None,
    num_classes: int | None = None,
) -> ClassificationState:
    """Count a window of labelled classifications.

    Parameters
    ----------
    labels
        True class index per sample, shape ``(N,)``.
    probabilities
        Class probabilities, shape ``(N, C)`` (float32 or float64, each in [0, 1]). The
        prediction is the most probable class (the first one on ties, like ``argmax``).
    predictions
        Predicted class index per sample, instead of ``probabilities`` (no top-k then).
    num_classes
        Number of classes; required with ``predictions``, checked with ``probabilities``.
    """
    if (probabilities is None) == (predictions is None):
        raise ValueError("pass exactly one of probabilities and predictions")
    if probabilities is not None:
        p_shape = np.shape(probabilities)
        if num_classes is not None and len(p_shape) == 2 and p_shape[1] != num_classes:
            raise ValueError(f"probabilities have {p_shape[1]} columns but num_classes is {num_classes}")
        scan = scan_probabilities(labels, probabilities, n_bins=1, rank=True, brier=False, classwise=False)
        return state_from_scan(scan, labels, int(p_shape[1]))
    if num_classes is None:
        raise ValueError("num_classes is required with predictions")
    assert predictions is not None
    y = check_labels(labels, None, num_classes)
    pred = check_labels(predictions, y.size, num_classes, "predictions")
    cells, counts = _sum_cells(y * num_classes + pred, np.ones(y.size, dtype=np.int64))
    return ClassificationState(
        num_classes, readonly(cells), readonly(counts), readonly(np.zeros(RANK_CAP + 1, dtype=np.int64))
    )


def state_from_scan(scan: RowScan, labels: ArrayLike, num_classes: int) -> ClassificationState:
    """The classification state of rows already scanned (shared with the calibration pass)."""
    y = np.asarray(labels, dtype=np.int64)
    cells, counts = _sum_cells(y * num_classes + scan.predicted, np.ones(y.size, dtype=np.int64))
    ranks = np.bincount(scan.true_rank, minlength=RANK_CAP + 1).astype(np.int64)
    return ClassificationState(num_classes, readonly(cells), readonly(counts), readonly(ranks))


def classification_metrics(state: ClassificationState, *, top_k: Iterable[int] = (1, 5)) -> ClassificationMetrics:
    """Accuracy, top-k accuracy, per-class and averaged precision / recall / F1, confusion matrix."""
    c = state.num_classes
    true_idx, pred_idx = np.divmod(state.cells, c)
    tp = np.zeros(c, dtype=np.int64)
    diagonal = true_idx == pred_idx
    tp[true_idx[diagonal]] = state.cell_counts[diagonal]
    support = np.zeros(c, dtype=np.int64)
    predicted = np.zeros(c, dtype=np.int64)
    np.add.at(support, true_idx, state.cell_counts)
    np.add.at(predicted, pred_idx, state.cell_counts)
    n = state.n

    # every class at once, as arrays with NaN where undefined: the same correctly rounded
    # divisions as one Python division per class (counts are exact in float64 below 2**53), without
    # building per-class lists, which would dominate a 1-hour window's metrics
    precision = _ratios(tp, predicted)
    recall = _ratios(tp, support)
    f1 = _ratios(2 * tp, support + predicted)
    per_class = tuple(
        ClassMetrics(precision=_none(p), recall=_none(r), f1=_none(f), support=s, predicted=q)
        for p, r, f, s, q in zip(precision.tolist(), recall.tolist(), f1.tolist(), support.tolist(), predicted.tolist(), strict=True)
    )  # fmt: skip
    ranked = int(state.rank_counts.sum())
    top: dict[int, float | None] = {}
    for k in top_k:
        if not 1 <= k <= RANK_CAP:
            raise ValueError(f"top-k accuracy is kept for 1 <= k <= {RANK_CAP}, not k = {k}")
        # defined only when every sample of the window was ranked (probabilities, not classes)
        top[k] = _ratio(int(state.rank_counts[:k].sum()), n) if ranked == n else None
    return ClassificationMetrics(
        n=n,
        accuracy=_ratio(int(tp.sum()), n),
        top_k_accuracy=top,
        per_class=per_class,
        macro=AveragedMetrics(_average(precision, None), _average(recall, None), _average(f1, None)),
        weighted=AveragedMetrics(_average(precision, support), _average(recall, support), _average(f1, support)),
        confusion_matrix=state.confusion_matrix(),
    )


def _ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def _ratios(num: NDArray[np.int64], den: NDArray[np.int64]) -> NDArray[np.float64]:
    """``num / den`` per class, NaN where ``den`` is 0."""
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)


def _none(value: float) -> float | None:
    return None if value != value else value  # NaN -> None


def _average(values: NDArray[np.float64], weights: NDArray[np.int64] | None) -> float | None:
    """The mean of the defined values (scikit-learn's ``zero_division=nan`` averaging)."""
    defined = ~np.isnan(values)
    if not defined.any():
        return None
    # np.mean and np.average's arithmetic, without their argument handling (most of the cost of
    # a small window's metrics): the same pairwise sums and divisions, so the same floats
    a = values[defined]
    if weights is None:
        return float(a.sum() / a.size)
    w = weights[defined]
    if w.sum() == 0:  # scikit-learn's fall-back: an unweighted mean
        return float(a.sum() / a.size)
    return float(np.multiply(a, w, dtype=np.float64).sum() / w.sum(dtype=np.float64))


def _sum_cells(keys: NDArray[np.int64], counts: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Sum ``counts`` per distinct key; keys come back sorted."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    top = int(keys.max()) + 1
    if top <= max(4 * keys.size, 1 << 20):
        # a dense count is one pass; sorting a million keys costs ten times more
        if (counts == 1).all():
            dense = np.bincount(keys, minlength=top).astype(np.int64)
        else:
            dense = np.zeros(top, dtype=np.int64)
            np.add.at(dense, keys, counts)
        cells = np.flatnonzero(dense)
        return cells.astype(np.int64), dense[cells]
    cells, inverse = np.unique(keys, return_inverse=True)
    summed = np.zeros(cells.size, dtype=np.int64)
    np.add.at(summed, inverse, counts)
    return cells.astype(np.int64), summed
