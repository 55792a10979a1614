"""One pass over class probabilities: everything classification and calibration need per row.

A row of a 10⁶ × 1 000 float32 array is 4 kB and sits in L1 while the kernel reads it a few
times; the array itself is read from memory once. That single pass (instead of numpy's separate
``max``, ``argmax``, range checks, comparisons and square sums, each streaming 4 GB) is why the
kernel is hand-written. Its loops are shaped for LLVM's vectoriser without ``fastmath``: the
maximum is taken over the bit patterns (an integer maximum vectorises, a float one does not
without licence to ignore NaN), searches test fixed blocks of 16, and the square sum of the Brier
score keeps eight fixed lanes so its rounding does not depend on the CPU's vector width.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._codec import MAX_ROWS_PER_CALL, fixed_from_limbs, fixed_zeros, readonly
from ._jit import kernel

#: The rank of the true label is counted up to this value; top-k accuracy is exact for k ≤ it.
RANK_CAP: Final = 20


@kernel
def _scan_rows(
    p: Any,
    bits: Any,
    one_bits: Any,
    labels: Any,
    edges: Any,
    rank_cap: int,
    want_rank: bool,
    want_brier: bool,
    want_classwise: bool,
    conf: Any,
    pred: Any,
    rank: Any,
    count: Any,
    hits: Any,
    conf_hi: Any,
    conf_lo: Any,
    brier: Any,
    cw_count: Any,
    cw_hits: Any,
    cw_hi: Any,
    cw_lo: Any,
) -> int:
    """Scan rows of ``p``; return the index of the first row with a value outside [0, 1] (or -1).

    ``bits`` is ``p`` viewed as unsigned integers of its width and ``one_bits`` the pattern of
    1.0. Per row: the top-label confidence and its class (the first maximum, like ``argmax``),
    the rank of the true label (how many classes come before it: a higher probability, or an
    equal one at a higher index, which is scikit-learn's order), the top-label bin, the Brier
    term and, when asked, every class probability's bin.
    """
    n, c = p.shape
    n_bins = edges.shape[0] - 1
    c8 = c - c % 8
    e1 = edges[1]
    low_count = np.zeros(c if want_classwise else 0, dtype=np.int64)
    low_hi = np.zeros_like(low_count)
    low_lo = np.zeros_like(low_count)
    for i in range(n):
        r = p[i]
        b = bits[i]
        t = labels[i]
        # Non-negative floats order like their bit patterns, and every pattern above that of 1.0
        # is a value above 1, a negative value or NaN: one integer maximum (which vectorises,
        # unlike a float one without fastmath) finds the top class and validates the row.
        mb = b[0]
        for j in range(1, c):
            mb = max(mb, b[j])
        if mb <= one_bits:
            # the first maximum: test 16 at a time (one vector compare), then find it in the block
            a = 0
            while a + 16 <= c:
                hit = False
                for lane in range(16):
                    hit |= b[a + lane] == mb
                if hit:
                    break
                a += 16
            while b[a] != mb:
                a += 1
            if want_rank:
                bt = b[t]
                g = np.int32(0)
                for j in range(c):
                    g += np.int32((b[j] > bt) | ((b[j] == bt) & (j > t)))
                rank[i] = min(g, rank_cap)
        else:  # an invalid row, or one holding -0.0 (its pattern has the sign bit): compare floats
            for j in range(c):
                if not (r[j] >= 0.0 and r[j] <= 1.0):
                    return i
            a = 0
            for j in range(1, c):
                if r[j] > r[a]:
                    a = j
            if want_rank:
                pt = r[t]
                g = np.int32(0)
                for j in range(c):
                    g += np.int32((r[j] > pt) | ((r[j] == pt) & (j > t)))
                rank[i] = min(g, rank_cap)
        m = r[a]
        conf[i] = m
        pred[i] = a
        # --- top-label bin, as torchmetrics bins: float32(x) in [e_k, e_k+1), and 1.0 a bin of its own
        x = np.float64(m)
        xb = np.float64(np.float32(m))
        k = min(int(xb * n_bins), n_bins)
        while k > 0 and xb < edges[k]:
            k -= 1
        while k < n_bins and xb >= edges[k + 1]:
            k += 1
        count[k] += 1
        hits[k] += np.int64(a == t)
        # floor(x * 2**63) is exact (scaling by a power of two) and fits an unsigned 64-bit word
        q = np.uint64(x * 9.223372036854775808e18)
        conf_hi[k] += np.int64(q >> np.uint64(32))
        conf_lo[k] += np.int64(q & np.uint64(0xFFFFFFFF))
        # --- Brier: sum_j (p_j - [j == t])^2 = sum_j p_j^2 + 1 - 2 p_t
        if want_brier:
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
            for j in range(0, c8, 8):
                x0 = np.float64(r[j])
                x1 = np.float64(r[j + 1])
                x2 = np.float64(r[j + 2])
                x3 = np.float64(r[j + 3])
                x4 = np.float64(r[j + 4])
                x5 = np.float64(r[j + 5])
                x6 = np.float64(r[j + 6])
                x7 = np.float64(r[j + 7])
                s0 += x0 * x0
                s1 += x1 * x1
                s2 += x2 * x2
                s3 += x3 * x3
                s4 += x4 * x4
                s5 += x5 * x5
                s6 += x6 * x6
                s7 += x7 * x7
            s = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
            for j in range(c8, c):
                xj = np.float64(r[j])
                s += xj * xj
            # in [0, 2]: scaled by 2**62, not 2**63, to fit the word; the unit is restored below
            q = np.uint64(max(s + (1.0 - 2.0 * np.float64(r[t])), 0.0) * 4.611686018427387904e18)
            brier[0] += np.int64(q >> np.uint64(32))
            brier[1] += np.int64(q & np.uint64(0xFFFFFFFF))
        # --- classwise bins: every probability p_ij in the bins of class j
        if want_classwise:
            # Most probabilities of a many-class model fall in the first bin: count those with
            # branch-free (vectorised) updates of per-class totals, then visit the rest, found
            # 16 at a time, one by one.
            for j in range(c):
                xj = np.float64(r[j])
                first = np.int64(np.float64(np.float32(r[j])) < e1)
                q = np.uint64(xj * 9.223372036854775808e18)
                low_count[j] += first
                low_hi[j] += np.int64(q >> np.uint64(32)) * first
                low_lo[j] += np.int64(q & np.uint64(0xFFFFFFFF)) * first
            j0 = 0
            while j0 < c:
                if j0 + 16 <= c:  # a fixed-length test vectorises; a variable one does not
                    above = False
                    for lane in range(16):
                        above |= np.float64(np.float32(r[j0 + lane])) >= e1
                    j1 = j0 + 16
                else:
                    above = True
                    j1 = c
                if above:
                    for j in range(j0, j1):
                        xb = np.float64(np.float32(r[j]))
                        if xb < e1:
                            continue
                        k = min(int(xb * n_bins), n_bins)
                        while k > 1 and xb < edges[k]:
                            k -= 1
                        while k < n_bins and xb >= edges[k + 1]:
                            k += 1
                        q = np.uint64(np.float64(r[j]) * 9.223372036854775808e18)
                        cw_count[j, k] += 1
                        cw_hi[j, k] += np.int64(q >> np.uint64(32))
                        cw_lo[j, k] += np.int64(q & np.uint64(0xFFFFFFFF))
                j0 = j1
            xb = np.float64(np.float32(r[t]))
            k = min(int(xb * n_bins), n_bins)
            while k > 0 and xb < edges[k]:
                k -= 1
            while k < n_bins and xb >= edges[k + 1]:
                k += 1
            cw_hits[t, k] += 1
    for j in range(low_count.shape[0]):
        cw_count[j, 0] += low_count[j]
        cw_hi[j, 0] += low_hi[j]
        cw_lo[j, 0] += low_lo[j]
    return -1


def _add_fixed(total: NDArray[Any] | None, part: NDArray[Any]) -> NDArray[Any]:
    """Exact sums so far plus one call's; the first call's are taken as they are (adding them to
    zeros, an object array of Python ints, was a fifth of a 30-row scan's time)."""
    return part if total is None else total + part


@functools.cache
def torch_edges(n_bins: int) -> NDArray[np.float64]:
    """Bin edges from 0 to 1 as torchmetrics makes them: ``torch.linspace`` in float32.

    torchmetrics casts top-label confidences to float32 and bins them against
    ``torch.linspace(0, 1, n_bins + 1, dtype=torch.float32)``. That linspace computes ``i·step``
    for the first half and ``1 - (n - i)·step`` for the rest with ``step = float32(1 / n)`` and
    one rounding (a fused multiply-add), so several edges differ by one unit in the last place
    from the float32 nearest to ``i / n``, and a confidence equal to such an edge lands in
    another bin. One set of edges for every input type also keeps states of float32
    probabilities and float64 confidences mergeable. Returned as float64 (exact).
    """
    step = np.float64(np.float32(1.0) / np.float32(n_bins))
    i = np.arange(n_bins + 1, dtype=np.float64)
    half = (n_bins + 1) // 2
    edges = np.where(i < half, i * step, 1.0 - (n_bins - i) * step)
    return readonly(edges.astype(np.float32).astype(np.float64))


@dataclass(frozen=True, slots=True)
class RowScan:
    """What one pass over the probabilities leaves (internal to the package)."""

    confidence: NDArray[Any]
    predicted: NDArray[np.int64]
    #: empty unless the rank was asked for
    true_rank: NDArray[np.int64]
    edges: NDArray[np.float64]
    count: NDArray[np.int64]
    hits: NDArray[np.int64]
    confidence_sum: NDArray[Any]
    brier_sum: int | None
    classwise_count: NDArray[np.int64] | None
    classwise_hits: NDArray[np.int64] | None
    classwise_sum: NDArray[Any] | None


def check_labels(labels: ArrayLike, n: int | None, num_classes: int | None, what: str = "labels") -> NDArray[np.int64]:
    """Labels as int64, checked against the row count and the class count."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if (
        arr.size
        and not np.issubdtype(arr.dtype, np.integer)
        and (not np.issubdtype(arr.dtype, np.floating) or not np.array_equal(arr, np.round(arr)))
    ):
        raise ValueError(f"{what} must be integer class indices, got dtype {arr.dtype}")
    out = arr.astype(np.int64, copy=False)
    if n is not None and out.size != n:
        raise ValueError(f"{what} has {out.size} values but there are {n} rows")
    if out.size and num_classes is not None and (out.min() < 0 or out.max() >= num_classes):
        bad = int(np.flatnonzero((out < 0) | (out >= num_classes))[0])
        raise ValueError(f"{what}[{bad}] = {out[bad]} is not a class index in [0, {num_classes})")
    return out


def scan_probabilities(
    labels: ArrayLike,
    probabilities: ArrayLike,
    *,
    n_bins: int,
    rank: bool,
    brier: bool,
    classwise: bool,
) -> RowScan:
    """Validate and scan ``probabilities`` (N × C, float32 or float64) against ``labels`` (N)."""
    p = np.asarray(probabilities)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be an N × C array, got shape {p.shape}")
    if p.dtype not in (np.float32, np.float64):
        if not np.issubdtype(p.dtype, np.floating) and not np.issubdtype(p.dtype, np.integer):
            raise ValueError(f"probabilities must be floating point, got dtype {p.dtype}")
        p = p.astype(np.float64)
    n, c = p.shape
    if c < 1:
        raise ValueError("probabilities must have at least one class column")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    y = check_labels(labels, n, c)
    p = np.ascontiguousarray(p)
    bits = p.view(np.uint32 if p.dtype == np.float32 else np.uint64)
    one_bits = bits.dtype.type(np.ones(1, dtype=p.dtype).view(bits.dtype)[0])
    edges = torch_edges(n_bins)
    slots = n_bins + 1
    conf = np.empty(n, dtype=p.dtype)
    pred = np.empty(n, dtype=np.int64)
    true_rank = np.zeros(n if rank else 0, dtype=np.int64)
    count = np.zeros(slots, dtype=np.int64)
    hits = np.zeros(slots, dtype=np.int64)
    conf_sum: NDArray[Any] | None = None  # exact sums, added up over the calls
    brier_sum: int = 0
    cw_shape = (c, slots) if classwise else (0, slots)
    cw_count = np.zeros(cw_shape, dtype=np.int64)
    cw_hits = np.zeros(cw_shape, dtype=np.int64)
    cw_sum: NDArray[Any] | None = None
    for start in range(0, n, MAX_ROWS_PER_CALL):
        stop = min(start + MAX_ROWS_PER_CALL, n)
        conf_hi = np.zeros(slots, dtype=np.int64)
        conf_lo = np.zeros(slots, dtype=np.int64)
        brier_limbs = np.zeros(2, dtype=np.int64)
        cw_hi = np.zeros(cw_shape, dtype=np.int64)
        cw_lo = np.zeros(cw_shape, dtype=np.int64)
        bad = _scan_rows(
            p[start:stop], bits[start:stop], one_bits, y[start:stop], edges, RANK_CAP, rank, brier, classwise,
            conf[start:stop], pred[start:stop], true_rank[start:stop],
            count, hits, conf_hi, conf_lo, brier_limbs, cw_count, cw_hits, cw_hi, cw_lo,
        )  # fmt: skip
        if bad >= 0:
            row = start + bad
            raise ValueError(
                f"probabilities row {row} has a value outside [0, 1] or NaN; pass softmax outputs, not logits"
            )
        conf_sum = _add_fixed(conf_sum, fixed_from_limbs(conf_hi, conf_lo))
        brier_sum += 2 * (int(brier_limbs[0]) * (1 << 32) + int(brier_limbs[1]))  # 2**-62 -> 2**-63 units
        if classwise:
            cw_sum = _add_fixed(cw_sum, fixed_from_limbs(cw_hi, cw_lo))
    if conf_sum is None:  # no rows
        conf_sum = fixed_zeros(slots)
    if cw_sum is None:
        cw_sum = fixed_zeros(cw_shape)
    return RowScan(
        confidence=conf,
        predicted=pred,
        true_rank=true_rank,
        edges=edges,
        count=count,
        hits=hits,
        confidence_sum=conf_sum,
        brier_sum=brier_sum if brier else None,
        classwise_count=cw_count if classwise else None,
        classwise_hits=cw_hits if classwise else None,
        classwise_sum=cw_sum if classwise else None,
    )
