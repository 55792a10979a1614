"""Calibration metrics from a mergeable state: ECE, adaptive ECE, MCE, classwise ECE, Brier.

Binning is torchmetrics' ``MulticlassCalibrationError``, for every input type: confidence ``c``
falls in bin ``k`` when ``float32(c)`` lies in ``[e_k, e_k+1)``, with the float32 edges of
``torch.linspace`` (:func:`monitor.metrics._scan.torch_edges`), and a confidence that is 1 in
float32 has a bin of its own (torchmetrics bucketises with ``right=True`` against ``n_bins + 1``
edges, so 1.0 falls past the last one). netcal bins float64 confidences against float64 edges
and clips them to ``[eps, 1 - eps]`` (1.0 joins the last bin as ``1 - eps``); the two agree
except for confidences within a float32 rounding of an edge, or of 1.

Per bin the state keeps the count, the number correct and the exact sum of the confidences
themselves (integer fixed point, :mod:`monitor.metrics._codec`), so a merged state reduces to
exactly the numbers of the whole window. ECE and MCE are then computed in float64; torchmetrics
sums in float32 and drifts (by 1e-5 on the 10⁶ samples of ``bench/metrics.py``).

Adaptive (equal-mass) ECE needs the samples themselves: its bin edges are quantiles of the
window's confidences, so no fixed summary of the parts gives the edges of the whole. The state
keeps the (confidence, correct) pairs, sorted; the definition is netcal's
``ECE(equal_intervals=False)``: edges ``numpy.quantile(confidences, linspace(0, 1, n + 1))``
with the first and last replaced by 0 and 1, bins ``[e_k, e_k+1)``, the last one closed.

Classwise ECE (Kull et al. 2019) bins every class's probability ``p_ij`` against ``y_i == j``
with the same rule and averages the per-class ECEs over all classes; for float32 probabilities it
equals the mean of torchmetrics' ``binary_calibration_error(p[:, j], y == j)`` (which bins float64
input against float64 edges). The Brier score is the multiclass
one, ``mean_i sum_j (p_ij - [y_i == j])²`` (range [0, 2]; scikit-learn's ``brier_score_loss``
with ``scale_by_half=False``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._classification import ClassificationState, state_from_scan
from ._codec import (
    FIXED_BITS,
    MAX_ROWS_PER_CALL,
    add_arrays,
    fixed_from_limbs,
    fixed_from_words,
    fixed_mean,
    fixed_to_words,
    fixed_zeros,
    pack,
    readonly,
    unpack,
)
from ._scan import RowScan, check_labels, scan_probabilities, torch_edges

_KIND: Final = "calibration"
#: Default number of equal-width bins (Guo et al. 2017; torchmetrics' default).
DEFAULT_BINS: Final = 15


@dataclass(frozen=True, eq=False, slots=True)
class CalibrationState:
    """Mergeable calibration tables of one window.

    Bin ``k < n_bins`` holds top-label confidences in ``[edges[k], edges[k+1])``; bin
    ``n_bins`` holds confidences of exactly 1.

    Attributes
    ----------
    edges
        The ``n_bins + 1`` bin edges (float64 holding the exact float32 values for float32 input).
    count, correct
        Samples per bin, and how many of them were predicted correctly.
    confidence_sum
        Exact sum of the confidences per bin, an integer in units of ``2**-63`` (object array).
    brier_sum
        Exact sum of the per-sample Brier terms in the same units; ``None`` when not computed.
    classwise_count, classwise_hits, classwise_sum
        ``(C, n_bins + 1)`` tables of every class probability against "the sample is of this
        class"; ``None`` when not computed.
    confidences, correct_sorted
        All (confidence, correct) pairs sorted, for adaptive ECE; ``None`` when not kept.
    """

    edges: NDArray[np.float64]
    count: NDArray[np.int64]
    correct: NDArray[np.int64]
    confidence_sum: NDArray[Any]
    brier_sum: int | None
    classwise_count: NDArray[np.int64] | None
    classwise_hits: NDArray[np.int64] | None
    classwise_sum: NDArray[Any] | None
    confidences: NDArray[Any] | None
    correct_sorted: NDArray[np.bool_] | None

    @property
    def n_bins(self) -> int:
        """Number of equal-width bins (the bin of confidence 1 not counted)."""
        return int(self.edges.size - 1)

    @property
    def n(self) -> int:
        """Number of samples."""
        return int(self.count.sum())

    def without_classwise(self) -> CalibrationState:
        """This state without its per-class tables (e.g. to merge windows whose class list grew)."""
        return replace(self, classwise_count=None, classwise_hits=None, classwise_sum=None)

    @classmethod
    def merge(cls, *states: CalibrationState) -> CalibrationState:
        """The state of the union of the windows (exact, associative and commutative)."""
        if not states:
            raise ValueError("merge needs at least one state")
        first = states[0]
        for s in states[1:]:
            if not np.array_equal(s.edges, first.edges):
                raise ValueError("cannot merge calibration states with different bin edges")
        briers = [s.brier_sum for s in states]
        brier = None if any(b is None for b in briers) else sum(b for b in briers if b is not None)
        cw_count = cw_hits = cw_sum = None
        counts = [s.classwise_count for s in states if s.classwise_count is not None]
        hits = [s.classwise_hits for s in states if s.classwise_hits is not None]
        sums = [s.classwise_sum for s in states if s.classwise_sum is not None]
        if len(counts) == len(states):
            if len({c.shape for c in counts}) != 1:
                raise ValueError("cannot merge classwise tables of different class counts")
            cw_count, cw_hits, cw_sum = add_arrays(counts), add_arrays(hits), add_arrays(sums)
        conf = correct = None
        confs = [s.confidences for s in states if s.confidences is not None]
        rights = [s.correct_sorted for s in states if s.correct_sorted is not None]
        if len(confs) == len(states):
            conf, correct = _sorted_samples(np.concatenate(confs), np.concatenate(rights), runs=True)
        return cls(
            edges=first.edges,
            count=add_arrays([s.count for s in states]),
            correct=add_arrays([s.correct for s in states]),
            confidence_sum=add_arrays([s.confidence_sum for s in states]),
            brier_sum=brier,
            classwise_count=cw_count,
            classwise_hits=cw_hits,
            classwise_sum=cw_sum,
            confidences=conf,
            correct_sorted=correct,
        )

    def to_bytes(self) -> bytes:
        """Compact, versioned bytes (see :mod:`monitor.metrics._codec`); no pickle."""
        arrays: dict[str, NDArray[Any]] = {
            "edges": self.edges,
            "count": self.count,
            "correct": self.correct,
            "confidence_sum": fixed_to_words(self.confidence_sum),
        }
        if self.classwise_count is not None and self.classwise_hits is not None and self.classwise_sum is not None:
            arrays["classwise_count"] = self.classwise_count
            arrays["classwise_hits"] = self.classwise_hits
            arrays["classwise_sum"] = fixed_to_words(self.classwise_sum)
        if self.confidences is not None and self.correct_sorted is not None:
            arrays["confidences"] = self.confidences
            arrays["correct_sorted"] = self.correct_sorted
        meta = {"brier_sum": None if self.brier_sum is None else str(self.brier_sum)}
        return pack(_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> CalibrationState:
        """Read a state written by :meth:`to_bytes`."""
        meta, a = unpack(data, _KIND, required=("edges", "count", "correct", "confidence_sum"))
        brier = meta.get("brier_sum")
        has_cw = "classwise_count" in a
        has_samples = "confidences" in a
        return cls(
            edges=a["edges"],
            count=a["count"],
            correct=a["correct"],
            confidence_sum=readonly(fixed_from_words(a["confidence_sum"])),
            brier_sum=None if brier is None else int(brier),
            classwise_count=a["classwise_count"] if has_cw else None,
            classwise_hits=a["classwise_hits"] if has_cw else None,
            classwise_sum=readonly(fixed_from_words(a["classwise_sum"])) if has_cw else None,
            confidences=a["confidences"] if has_samples else None,
            correct_sorted=a["correct_sorted"] if has_samples else None,
        )


@dataclass(frozen=True, slots=True)
class ReliabilityBin:
    """One bin of the reliability diagram: ``[lower, upper)``, or ``[1, 1]`` for the last."""

    lower: float
    upper: float
    count: int
    #: mean confidence, ``None`` for an empty bin
    confidence: float | None
    #: fraction correct, ``None`` for an empty bin
    accuracy: float | None


@dataclass(frozen=True, slots=True)
class CalibrationMetrics:
    """Everything :func:`calibration_metrics` derives from a state (``None``: not computable)."""

    n: int
    ece: float | None
    mce: float | None
    adaptive_ece: float | None
    classwise_ece: float | None
    brier: float | None
    reliability: tuple[ReliabilityBin, ...]


def calibration_state(
    labels: ArrayLike,
    probabilities: ArrayLike,
    *,
    n_bins: int = DEFAULT_BINS,
    brier: bool = True,
    classwise: bool = False,
    samples: bool = True,
) -> CalibrationState:
    """Bin a window of class probabilities (N × C) against the true labels (N).

    ``brier`` adds the Brier sums, ``classwise`` the per-class tables (every probability is
    binned: the costliest part), ``samples`` keeps the sorted (confidence, correct) pairs that
    adaptive ECE needs (9 bytes a sample for float64 input, 5 for float32).
    """
    scan = scan_probabilities(labels, probabilities, n_bins=n_bins, rank=False, brier=brier, classwise=classwise)
    return _state_from_scan(scan, labels, samples)


def calibration_state_from_confidences(
    confidences: ArrayLike, correct: ArrayLike, *, n_bins: int = DEFAULT_BINS, samples: bool = True
) -> CalibrationState:
    """Bin top-label confidences and whether each prediction was right (no Brier, no classwise).

    For windows where only the predicted class and its confidence were logged. Gives the same
    state as :func:`calibration_state` on the full probabilities without Brier and classwise.
    """
    conf = np.asarray(confidences)
    if conf.dtype not in (np.float32, np.float64):
        conf = conf.astype(np.float64)
    hit = np.asarray(correct)
    if conf.ndim != 1 or hit.shape != conf.shape:
        raise ValueError(f"confidences and correct must be 1-D of one length, got {conf.shape} and {hit.shape}")
    if hit.dtype != np.bool_:
        if hit.size and not np.isin(hit, (0, 1)).all():
            raise ValueError("correct must be boolean (or 0/1)")
        hit = hit.astype(bool)
    if conf.size and not ((conf >= 0) & (conf <= 1)).all():
        raise ValueError("confidences must lie in [0, 1]")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    edges = torch_edges(n_bins)
    slot = np.searchsorted(edges, conf.astype(np.float32).astype(np.float64), side="right") - 1
    count = np.bincount(slot, minlength=n_bins + 1).astype(np.int64)
    correct_count = np.bincount(slot, weights=hit, minlength=n_bins + 1).astype(np.int64)
    sums = _fixed_bin_sums(conf.astype(np.float64), slot, n_bins + 1)
    conf_s, hit_s = _sorted_samples(conf, hit) if samples else (None, None)
    return CalibrationState(
        edges=readonly(edges),
        count=readonly(count),
        correct=readonly(correct_count),
        confidence_sum=readonly(sums),
        brier_sum=None,
        classwise_count=None,
        classwise_hits=None,
        classwise_sum=None,
        confidences=conf_s,
        correct_sorted=hit_s,
    )


def probability_states(
    labels: ArrayLike,
    probabilities: ArrayLike,
    *,
    n_bins: int = DEFAULT_BINS,
    classwise: bool = True,
    samples: bool = True,
) -> tuple[ClassificationState, CalibrationState]:
    """Both states of a window from one pass over the probabilities (what ``cvmon eval`` uses)."""
    scan = scan_probabilities(labels, probabilities, n_bins=n_bins, rank=True, brier=True, classwise=classwise)
    num_classes = int(np.shape(probabilities)[1])
    return state_from_scan(scan, labels, num_classes), _state_from_scan(scan, labels, samples)


def _state_from_scan(scan: RowScan, labels: ArrayLike, samples: bool) -> CalibrationState:
    conf = correct = None
    if samples:
        y = check_labels(labels, None, None)
        conf, correct = _sorted_samples(scan.confidence, scan.predicted == y)
    return CalibrationState(
        edges=readonly(scan.edges),
        count=readonly(scan.count),
        correct=readonly(scan.hits),
        confidence_sum=readonly(scan.confidence_sum),
        brier_sum=scan.brier_sum,
        classwise_count=None if scan.classwise_count is None else readonly(scan.classwise_count),
        classwise_hits=None if scan.classwise_hits is None else readonly(scan.classwise_hits),
        classwise_sum=None if scan.classwise_sum is None else readonly(scan.classwise_sum),
        confidences=conf,
        correct_sorted=correct,
    )


def calibration_metrics(state: CalibrationState, *, adaptive_bins: int | None = None) -> CalibrationMetrics:
    """ECE (L1), MCE (max), adaptive ECE, classwise ECE, Brier and the reliability diagram."""
    n = state.n
    n_bins = state.n_bins
    bins: list[ReliabilityBin] = []
    ece = 0.0
    mce = 0.0
    # Python scalars once: indexing numpy arrays bin by bin dominates a small window's cost
    edges = state.edges.tolist()
    counts, corrects, sums = state.count.tolist(), state.correct.tolist(), state.confidence_sum.tolist()
    for k in range(n_bins + 1):
        cnt = counts[k]
        lower = edges[min(k, n_bins)]
        upper = edges[min(k + 1, n_bins)]
        if cnt == 0:
            bins.append(ReliabilityBin(lower, upper, 0, None, None))
            continue
        conf = fixed_mean(sums[k], cnt)
        acc = corrects[k] / cnt
        gap = abs(acc - conf)
        ece += gap * (cnt / n)
        mce = max(mce, gap)
        bins.append(ReliabilityBin(lower, upper, cnt, conf, acc))
    brier = None
    if state.brier_sum is not None and n:
        brier = fixed_mean(state.brier_sum, n)
    return CalibrationMetrics(
        n=n,
        ece=ece if n else None,
        mce=mce if n else None,
        adaptive_ece=_adaptive_ece(state, adaptive_bins or n_bins) if n else None,
        classwise_ece=_classwise_ece(state) if n else None,
        brier=brier,
        reliability=tuple(bins),
    )


def _adaptive_ece(state: CalibrationState, n_bins: int) -> float | None:
    if state.confidences is None or state.correct_sorted is None:
        return None
    conf = state.confidences
    n = conf.size
    # computed in the samples' own precision, as netcal computes on its input
    edges = sorted_quantiles(conf, np.linspace(0.0, 1.0, n_bins + 1))
    edges[0] = 0.0
    edges[-1] = 1.0
    starts = np.searchsorted(conf, edges, side="left")
    starts[-1] = n  # the last bin is closed on the right
    # correct counts per bin from one cumulative count (exact integers)
    right = np.concatenate(([0], np.cumsum(state.correct_sorted, dtype=np.int64)))[starts].tolist()
    conf64 = conf.astype(np.float64)
    total = 0.0
    bounds = starts.tolist()
    for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
        cnt = hi - lo
        if cnt == 0:
            continue
        acc = (right[b + 1] - right[b]) / cnt
        mean_conf = float(conf64[lo:hi].sum()) / cnt
        total += abs(acc - mean_conf) * (cnt / n)
    return total


def sorted_quantiles(values: NDArray[Any], q: NDArray[np.float64]) -> NDArray[np.float64]:
    """``np.quantile(values, q)`` (its default, linear method) of values already sorted.

    numpy's own arithmetic, step for step (virtual index ``(n - 1) q``, its neighbours, and the
    two-sided interpolation of ``numpy.lib._function_base_impl._lerp``), so the same floats; written
    here because np.quantile partitions the samples again and checks its arguments at every call,
    which cost as much as the rest of a small window's calibration metrics. A test holds it equal
    to np.quantile.
    """
    n = values.size
    virtual = (n - 1) * q
    below = np.floor(virtual)
    above = below + 1
    last = virtual >= n - 1
    below[last] = -1
    above[last] = -1
    lo, hi = below.astype(np.intp), above.astype(np.intp)
    gamma = virtual - lo
    a, b = values[lo], values[hi]
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=gamma >= 0.5, casting="unsafe")
    return out


def _classwise_ece(state: CalibrationState) -> float | None:
    if state.classwise_count is None or state.classwise_hits is None or state.classwise_sum is None:
        return None
    count = state.classwise_count
    occupied = count > 0
    # exact mean confidence per occupied (class, bin), correctly rounded
    means = np.zeros(count.shape, dtype=np.float64)
    den = count[occupied].astype(object) * (1 << FIXED_BITS)
    means[occupied] = (state.classwise_sum[occupied] / den).astype(np.float64)
    acc = np.divide(state.classwise_hits, count, out=np.zeros(count.shape), where=occupied)
    n = state.n
    per_class = np.sum(np.abs(acc - means) * (count / n), axis=1)
    return float(np.mean(per_class))


def _sorted_samples(
    conf: NDArray[Any], correct: NDArray[np.bool_], *, runs: bool = False
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """Samples in one canonical order (by confidence, then correct) whatever the merge order.

    ``runs``: the samples are sorted runs (the parts of a merge), which numpy's stable sort
    (timsort) merges instead of sorting anew, an order of magnitude faster for a week of daily
    runs. On unsorted samples its quicksort is the faster.
    """
    conf = conf + conf.dtype.type(0.0)  # -0.0 -> 0.0, so the bit patterns below are monotone
    if conf.dtype == np.float32:
        # a confidence's float32 pattern is below 2**30, so pattern and flag fit one 32-bit key:
        # one sort of those beats a two-key lexsort by about 5x
        key = (conf.view(np.uint32) << np.uint32(1)) | correct.astype(np.uint32)
        key.sort(kind="stable" if runs else "quicksort")
        out_conf = (key >> np.uint32(1)).view(np.float32)
        out_correct = (key & np.uint32(1)).astype(bool)
    else:
        order = np.lexsort((correct, conf))
        out_conf, out_correct = conf[order], correct[order].astype(bool)
    return readonly(out_conf), readonly(out_correct)


def _fixed_bin_sums(values: NDArray[np.float64], slot: NDArray[np.intp], slots: int) -> NDArray[Any]:
    """Exact per-bin sums of ``values`` in [0, 1], as the kernels make them (two 32-bit limbs)."""
    sums = fixed_zeros(slots)
    for start in range(0, values.size, MAX_ROWS_PER_CALL):
        scaled = values[start : start + MAX_ROWS_PER_CALL] * 2.0**31
        whole = np.floor(scaled)
        hi = whole.astype(np.int64)
        lo = np.floor((scaled - whole) * 2.0**32).astype(np.int64)
        part = slot[start : start + MAX_ROWS_PER_CALL]
        order = np.argsort(part, kind="stable")
        bounds = np.searchsorted(part[order], np.arange(slots + 1))
        # prefix sums stay below 2**62 for 2**30 values of less than 2**32 each: exact in int64
        hi_cum = np.concatenate([[0], np.cumsum(hi[order])])
        lo_cum = np.concatenate([[0], np.cumsum(lo[order])])
        hi_sums = hi_cum[bounds[1:]] - hi_cum[bounds[:-1]]
        lo_sums = lo_cum[bounds[1:]] - lo_cum[bounds[:-1]]
        sums = sums + fixed_from_limbs(hi_sums, lo_sums)
    return sums
