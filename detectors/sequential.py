"""Anytime-valid comparisons of two model versions: confidence sequences for canary gates.

A canary gate is polled every minute for hours. A fixed-horizon test (a z-test, Kolmogorov-Smirnov,
Kayenta's Mann-Whitney) re-checked at every poll rejects a healthy candidate far more often than its
α. A *confidence sequence* (CS) at level α holds the true value at every sample size at once with
probability ≥ 1 − α (Ville's inequality), so a decision read from it at any poll, as often as
anyone likes, falsely fails a candidate with probability ≤ α. Every function here returns the CS at
the data given; all of them depend only on counts or histograms, not on the order of arrival, so a
caller may recompute them from its stored data at each poll.

=====================================  ===================================================  ==========================
comparison                             confidence sequence                                  reference
=====================================  ===================================================  ==========================
difference of two proportions          normal mixture (mixture SPRT) in information time,   Robbins 1970; Johari et al.
(accuracy, error rate, precision,      1/variance with a smoothed plug-in variance           2022; Waudby-Smith et al.
recall)                                (asymptotically anytime-valid)                        2024 (asymptotic CS)
one proportion (agreement on           beta-binomial (conjugate) mixture: exact              Robbins 1970; Howard et al.
mirrored inputs)                                                                             2021
difference of two estimates with       normal mixture on 1/(se_a² + se_b²) (mAP, with        Waudby-Smith et al. 2024
standard errors (mAP by bootstrap)     bootstrap standard errors)
distance between two distributions     time-uniform DKW band per version, two-sample by      Howard & Ramdas 2022
(confidences): Kolmogorov-Smirnov      the triangle inequality: exact, nonasymptotic         (Theorem 2)
quantile ratio (latency p95)           fixed-quantile CS per version (beta-binomial          Howard & Ramdas 2022
                                       mixture on the count below the quantile): exact
class mix: largest change of a         per-class normal mixture, Bonferroni over classes
class's share
=====================================  ===================================================  ==========================

Results are :class:`Bounds` of the *difference* candidate − baseline (or of a distance), with the
point estimate and both versions' values; :func:`judge` turns bounds into pass / fail /
inconclusive against a tolerated regression. Every function takes arrays with a leading axis
(one entry per poll) as well as scalars, so a simulation judges 1 440 polls in one call.
docs/canary.md explains the choices; tests/detectors/test_sequential.py checks each bound against
its closed form (scipy quadrature, root finding) and its coverage by simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

Floats = NDArray[np.float64]

#: Decision codes, as the ``cvmon_canary_decision`` series exports them.
PASS: Final = 1
INCONCLUSIVE: Final = 0
FAIL: Final = -1
DECISIONS: Final = {PASS: "pass", INCONCLUSIVE: "inconclusive", FAIL: "fail"}

#: Latency histogram edges in milliseconds: 1 µs to 1 000 s, 1 % apart (the quantile bounds are
#: read at bin edges, so this is their resolution).
LATENCY_EDGES_MS: Final = np.exp(np.arange(math.log(1e-3), math.log(1e6) + 0.01, math.log(1.01)))
#: Confidence histogram: 1 000 equal bins on [0, 1].
CONFIDENCE_BINS: Final = 1000


@dataclass(frozen=True)
class Bounds:
    """A confidence sequence read at the data given (arrays when the inputs had a poll axis).

    ``estimate`` is the candidate − baseline difference (or a distance ≥ 0, or a ratio − 1);
    ``low`` and ``high`` bound it; ``baseline`` and ``candidate`` are the two values compared
    (NaN where a distance has none).
    """

    estimate: Floats
    low: Floats
    high: Floats
    baseline: Floats
    candidate: Floats


def judge(bounds: Bounds, tolerance: float, worse: Literal["higher", "lower"]) -> NDArray[np.int8]:
    """pass (1) / inconclusive (0) / fail (-1) for a tolerated regression.

    The *regression* is the difference when a higher value is worse (error rate, latency, a
    distance), its negative when a lower one is (accuracy). Fail: the whole CS is beyond the
    tolerance (the candidate is worse by more than it, with confidence 1 − α); pass: the whole CS
    is within it; otherwise inconclusive. Under a candidate whose regression is within the
    tolerance, the chance that any poll ever fails it is at most α.
    """
    if worse == "higher":
        low, high = np.asarray(bounds.low), np.asarray(bounds.high)
    else:
        low, high = -np.asarray(bounds.high), -np.asarray(bounds.low)
    out = np.zeros(np.broadcast(low, high).shape, dtype=np.int8)
    out[np.asarray(low > tolerance)] = FAIL
    out[np.asarray(high <= tolerance)] = PASS
    return out


# --------------------------------------------------------------------------------------------
# normal mixture (Robbins 1970; the two-sided boundary of Howard et al. 2021, eq. 14)


def mixture_rho(information_opt: float, alpha: float) -> float:
    """The mixture precision that makes the boundary tightest near ``information_opt``
    (Howard et al. 2021, Proposition 3: ρ = v / (2 log(1/α) + log(1 + 2 log(1/α))))."""
    if information_opt <= 0:
        raise ValueError("information_opt must be positive")
    log_a = math.log(1 / alpha)
    return information_opt / (2 * log_a + math.log(1 + 2 * log_a))


def mixture_radius(information: ArrayLike, alpha: float, information_opt: float) -> Floats:
    """Half-width of the two-sided normal-mixture CS on the scale of the estimate.

    For a running estimate with variance 1/I (``information``), S = I·(estimate − truth) is a
    Brownian motion in I; mixing exp(λS − λ²I/2) over λ ~ N(0, 1/ρ) gives the martingale
    sqrt(ρ/(I+ρ))·exp(S²/(2(I+ρ))), which crosses 1/α with probability ≤ α ever. Its boundary
    sqrt((I+ρ)(log(1+I/ρ) + 2 log(1/α))) divided by I is the radius. Infinite where I is 0.
    """
    _check_alpha(alpha)
    info = np.asarray(information, dtype=np.float64)
    rho = mixture_rho(information_opt, alpha)
    with np.errstate(divide="ignore", invalid="ignore"):
        boundary = np.sqrt((info + rho) * (np.log1p(info / rho) + 2 * math.log(1 / alpha)))
        return np.where(info > 0, boundary / info, np.inf)


def _smoothed(x: Floats, n: Floats) -> Floats:
    """(x + ½)/(n + 1): a plug-in proportion whose variance is never 0 (10 correct out of 10
    must not look certain)."""
    return (x + 0.5) / (n + 1.0)


def proportion_difference(
    x_baseline: ArrayLike,
    n_baseline: ArrayLike,
    x_candidate: ArrayLike,
    n_candidate: ArrayLike,
    *,
    alpha: float,
    n_opt: float = 1000.0,
) -> Bounds:
    """CS of p_candidate − p_baseline from two independent Bernoulli samples (the mixture SPRT of
    Johari et al. 2022 in information time I = 1/(p̃_a(1−p̃_a)/n_a + p̃_b(1−p̃_b)/n_b)).

    Asymptotically anytime-valid (Waudby-Smith et al. 2024): the plug-in variance is smoothed and
    callers wait for a minimum sample before deciding; the tests measure the false-fail rate.
    ``n_opt``: samples per version where the sequence is tightest (it is valid for any choice).
    """
    xa, na, xb, nb = (np.asarray(v, dtype=np.float64) for v in (x_baseline, n_baseline, x_candidate, n_candidate))
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = np.where(na > 0, xa / na, np.nan)
        pb = np.where(nb > 0, xb / nb, np.nan)
        sa, sb = _smoothed(xa, na), _smoothed(xb, nb)
        variance = sa * (1 - sa) / na + sb * (1 - sb) / nb
        information = np.where((na > 0) & (nb > 0), 1.0 / variance, 0.0)
    # information at n_opt per version for proportions near ½ (the largest variance)
    radius = mixture_radius(information, alpha, information_opt=2.0 * n_opt)
    diff = pb - pa
    return Bounds(diff, diff - radius, diff + radius, pa, pb)


def estimate_difference(
    baseline: ArrayLike,
    se_baseline: ArrayLike,
    candidate: ArrayLike,
    se_candidate: ArrayLike,
    *,
    alpha: float,
    se_opt: float = 0.01,
) -> Bounds:
    """CS of candidate − baseline for two estimates with standard errors (e.g. mAP with bootstrap
    standard errors): the normal mixture in information time 1/(se_a² + se_b²). ``se_opt``: the
    standard error per version where the sequence is tightest."""
    a, b, sa, sb = (np.asarray(v, dtype=np.float64) for v in (baseline, candidate, se_baseline, se_candidate))
    with np.errstate(divide="ignore", invalid="ignore"):
        information = np.where(np.isfinite(a) & np.isfinite(b), 1.0 / (sa**2 + sb**2), 0.0)
    radius = mixture_radius(information, alpha, information_opt=1.0 / (2 * se_opt**2))
    diff = b - a
    return Bounds(diff, diff - radius, diff + radius, a, b)


def class_mix_distance(counts_baseline: ArrayLike, counts_candidate: ArrayLike, *, alpha: float, n_opt: float = 1000.0) -> Bounds:
    """CS of the largest change of a class's share of predictions, max_c |q_c − p_c|: a normal
    mixture per class at α / (number of classes) (Bonferroni), the last axis being the class."""
    ca, cb = np.asarray(counts_baseline, dtype=np.float64), np.asarray(counts_candidate, dtype=np.float64)
    k = ca.shape[-1]
    na, nb = ca.sum(axis=-1, keepdims=True), cb.sum(axis=-1, keepdims=True)
    per_class = proportion_difference(ca, na, cb, nb, alpha=alpha / max(k, 1), n_opt=n_opt)
    gap = np.abs(per_class.estimate)
    radius = per_class.high - per_class.estimate
    nan = np.full(gap.shape[:-1], np.nan)
    return Bounds(
        gap.max(axis=-1), np.maximum(gap - radius, 0.0).max(axis=-1), np.minimum(gap + radius, 1.0).max(axis=-1), nan, nan
    )


# --------------------------------------------------------------------------------------------
# one proportion: the beta-binomial mixture (exact)


def _log_mixture(x: Floats, n: Floats, p: Floats) -> Floats:
    """log of the uniform-prior mixture martingale ∫ q^x (1−q)^(n−x) dq / (p^x (1−p)^(n−x))."""
    from scipy.special import betaln, xlog1py, xlogy

    return betaln(x + 1, n - x + 1) - xlogy(x, p) - xlog1py(n - x, -p)


def proportion(x: ArrayLike, n: ArrayLike, *, alpha: float) -> Bounds:
    """Exact CS of one proportion: {p : mixture martingale < 1/α}, the set where the Beta(1, 1)
    mixture of likelihood ratios has not crossed 1/α (an interval around x/n; bisection)."""
    from scipy.special import betaln, xlog1py, xlogy

    _check_alpha(alpha)
    xs, ns = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(n, dtype=np.float64))
    threshold = math.log(1 / alpha)
    mixture = betaln(xs + 1, ns - xs + 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        centre = np.where(ns > 0, xs / ns, 0.5)

    def outside(p: Floats) -> NDArray[np.bool_]:
        return np.asarray(mixture - xlogy(xs, p) - xlog1py(ns - xs, -p) >= threshold)

    def edge(lo: Floats, hi: Floats, inside_is_hi: bool) -> Floats:
        for _ in range(52):  # 2^-52: float resolution on [0, 1]
            mid = 0.5 * (lo + hi)
            out = outside(mid)
            if inside_is_hi:
                lo, hi = np.where(out, mid, lo), np.where(out, hi, mid)
            else:
                lo, hi = np.where(out, lo, mid), np.where(out, mid, hi)
        return lo if inside_is_hi else hi

    zeros, ones = np.zeros_like(centre), np.ones_like(centre)
    low = np.where(outside(zeros + 1e-300), edge(zeros, centre, inside_is_hi=True), 0.0)
    high = np.where(outside(ones - 1e-16), edge(centre, ones, inside_is_hi=False), 1.0)
    low, high = np.where(ns > 0, low, 0.0), np.where(ns > 0, high, 1.0)
    value = np.where(ns > 0, centre, np.nan)
    nan = np.full(value.shape, np.nan)
    return Bounds(value, low, high, nan, value)


# --------------------------------------------------------------------------------------------
# distributions: the time-uniform DKW inequality (Howard & Ramdas 2022, Theorem 2)

#: The A of Howard & Ramdas's bound A·sqrt((log(1 + log t) + C)/t); their recommended 0.85.
DKW_A: Final = 0.85


@lru_cache(maxsize=64)
def dkw_constant(alpha: float, a: float = DKW_A) -> float:
    """The C of the time-uniform DKW bound at level α: the smallest C whose crossing probability
    4·exp(−γ²C)·(1 + 1/((γ² − 1)·log η)), γ² = (2/η)(A − sqrt(2(η − 1)/C))², minimised over η,
    is α (Howard & Ramdas 2022, proof of Theorem 2; their closed form is C ≤ 0.8·log(1612/α))."""
    from scipy.optimize import brentq, minimize_scalar

    _check_alpha(alpha)

    def crossing(c: float) -> float:
        eta_max = brentq(lambda eta: math.sqrt(eta / 2) + math.sqrt(2 * (eta - 1) / c) - a, 1.0, 2 * a * a)

        def bound(eta: float) -> float:
            gamma_sq = 2 / eta * (a - math.sqrt(2 * (eta - 1) / c)) ** 2
            if eta <= 1 or gamma_sq <= 1:
                return math.inf
            return 4 * math.exp(-gamma_sq * c) * (1 + 1 / ((gamma_sq - 1) * math.log(eta)))

        return float(minimize_scalar(bound, bounds=(1.0, eta_max), method="bounded", options={"xatol": 1e-10}).fun)

    high = 5.0
    while crossing(high) > alpha:
        high *= 2
    return float(brentq(lambda c: crossing(c) - alpha, 1e-3 if crossing(1e-3) > alpha else high / 2, high, xtol=1e-10))


def dkw_radius(n: ArrayLike, alpha: float) -> Floats:
    """ε(n): with probability ≥ 1 − α, sup_x |F̂_n(x) − F(x)| ≤ ε(n) for every n ≥ 1 at once
    (any F; discrete and binned values included). Infinite at n = 0."""
    ns = np.asarray(n, dtype=np.float64)
    c = dkw_constant(float(alpha))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ns >= 1, DKW_A * np.sqrt((np.log1p(np.log(np.maximum(ns, 1.0))) + c) / ns), np.inf)


def distribution_distance(hist_baseline: ArrayLike, hist_candidate: ArrayLike, *, alpha: float) -> Bounds:
    """CS of the Kolmogorov-Smirnov distance sup |F_candidate − F_baseline| on the bins' edges:
    each version's empirical CDF is within its time-uniform DKW radius (α/2 each), so the distance
    is within the sum of both radii of the empirical one. The last axis is the bin."""
    ha, hb = np.asarray(hist_baseline, dtype=np.float64), np.asarray(hist_candidate, dtype=np.float64)
    na, nb = ha.sum(axis=-1), hb.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fa = np.cumsum(ha, axis=-1) / na[..., None]
        fb = np.cumsum(hb, axis=-1) / nb[..., None]
        gap = np.nan_to_num(np.abs(fb - fa).max(axis=-1), nan=0.0)
    radius = dkw_radius(na, alpha / 2) + dkw_radius(nb, alpha / 2)
    nan = np.full(gap.shape, np.nan)
    return Bounds(gap, np.maximum(gap - radius, 0.0), np.minimum(gap + radius, 1.0), nan, nan)


def quantile_count_range(n: ArrayLike, q: float, alpha: float) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """The counts k₁ ≤ k ≤ k₂ of values at or below the true q-quantile that the beta-binomial
    mixture at level α accepts after n values: S = #{X ≤ Q(q)} is Binomial(n, q) at every n, so
    w.p. ≥ 1 − α it stays in [k₁(n), k₂(n)] for every n at once (the fixed-quantile confidence
    sequence of Howard & Ramdas 2022). log M(k) is convex in k: two integer bisections."""
    _check_alpha(alpha)
    ns = np.asarray(n, dtype=np.float64)
    threshold = math.log(1 / alpha)
    qs = np.full(ns.shape, q)

    def accepted(k: Floats) -> NDArray[np.bool_]:
        return np.asarray(_log_mixture(k, ns, qs) < threshold)

    mode = np.floor(ns * q)
    # k₁: the first accepted count in [0, mode]; k₂: the last in [mode, n]. Past a few values the
    # count nearest n·q is always accepted; where it is not (n = 1, q = 0.99), every count is kept
    mode_ok = accepted(mode)
    lo, hi = np.zeros_like(ns) - 1, mode.copy()  # invariant: lo rejected (or -1), hi accepted
    for _ in range(64):
        mid = np.floor((lo + hi) / 2)
        ok = accepted(np.maximum(mid, 0))
        move = hi - lo > 1
        hi, lo = np.where(move & ok, mid, hi), np.where(move & ~ok, mid, lo)
    k1 = hi
    lo, hi = mode.copy(), ns + 1  # invariant: lo accepted, hi rejected (or n + 1)
    for _ in range(64):
        mid = np.floor((lo + hi) / 2)
        ok = accepted(np.minimum(mid, ns))
        move = hi - lo > 1
        lo, hi = np.where(move & ok, mid, lo), np.where(move & ~ok, mid, hi)
    k2 = lo
    return np.where(mode_ok, k1, 0).astype(np.int64), np.where(mode_ok, k2, ns).astype(np.int64)


def _quantile_bounds(hist: Floats, edges: Floats, q: float, alpha: float) -> tuple[Floats, Floats, Floats]:
    """Point estimate and CS of the q-quantile from a histogram: between the k₁-th and the
    (k₂ + 1)-th smallest value (:func:`quantile_count_range`), read at the outer edges of the
    bins they fall in, so binning only widens it."""
    n = hist.sum(axis=-1)
    cum = np.cumsum(hist, axis=-1)
    bins = hist.shape[-1]
    k1, k2 = quantile_count_range(n, q, alpha)

    def bin_of(rank: Floats) -> NDArray[np.intp]:
        # the bin holding the rank-th smallest value (rank ≥ 1)
        return np.minimum((cum < rank[..., None]).sum(axis=-1), bins - 1)

    low = np.where(k1 >= 1, edges[bin_of(np.maximum(k1, 1).astype(np.float64))], edges[0])
    high = np.where(k2 + 1 <= n, edges[bin_of((k2 + 1).astype(np.float64)) + 1], np.inf)
    mid = bin_of(np.maximum(np.ceil(q * n), 1.0))
    centre = np.sqrt(edges[mid] * edges[mid + 1])
    return np.where(n > 0, centre, np.nan), low, high


def quantile_ratio(
    hist_baseline: ArrayLike, hist_candidate: ArrayLike, edges: ArrayLike, *, q: float, alpha: float
) -> Bounds:
    """CS of quantile_candidate / quantile_baseline − 1 (e.g. latency p95, positive values) from two
    histograms on ``edges``: each version's fixed-quantile CS at α/2, then
    [low_c / high_b, high_c / low_b] − 1."""
    if not 0.0 < q < 1.0:
        raise ValueError("q must be in (0, 1)")
    e = np.asarray(edges, dtype=np.float64)
    ha, hb = np.asarray(hist_baseline, dtype=np.float64), np.asarray(hist_candidate, dtype=np.float64)
    va, la, ua = _quantile_bounds(ha, e, q, alpha / 2)
    vb, lb, ub = _quantile_bounds(hb, e, q, alpha / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        estimate = vb / va - 1.0
        low = np.where(np.isfinite(ua), lb / ua - 1.0, -1.0)
        high = np.where(np.isfinite(ub) & (la > 0), ub / la - 1.0, np.inf)
    return Bounds(estimate, low, high, va, vb)


def latency_histogram(latency_ms: ArrayLike) -> NDArray[np.int64]:
    """Counts of latencies (milliseconds, NaN dropped) on :data:`LATENCY_EDGES_MS` (clipped to it)."""
    values = np.asarray(latency_ms, dtype=np.float64)
    values = values[np.isfinite(values)]
    edges = LATENCY_EDGES_MS
    index = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)
    return np.bincount(index, minlength=edges.size - 1).astype(np.int64)


def confidence_histogram(confidence: ArrayLike) -> NDArray[np.int64]:
    """Counts of confidences in :data:`CONFIDENCE_BINS` equal bins of [0, 1] (NaN dropped)."""
    values = np.asarray(confidence, dtype=np.float64)
    values = values[np.isfinite(values)]
    index = np.clip((values * CONFIDENCE_BINS).astype(np.int64), 0, CONFIDENCE_BINS - 1)
    return np.bincount(index, minlength=CONFIDENCE_BINS).astype(np.int64)


# --------------------------------------------------------------------------------------------
# fixed-horizon counterparts (what re-checking a classical test at every poll does)


def fixed_proportion_difference(
    x_baseline: ArrayLike, n_baseline: ArrayLike, x_candidate: ArrayLike, n_candidate: ArrayLike, *, alpha: float
) -> Bounds:
    """The Wald interval of p_candidate − p_baseline (statsmodels' ``confint_proportions_2indep``,
    method ``wald``): valid at one sample size fixed in advance, not at every poll."""
    from scipy.stats import norm

    xa, na, xb, nb = (np.asarray(v, dtype=np.float64) for v in (x_baseline, n_baseline, x_candidate, n_candidate))
    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = xa / na, xb / nb
        se = np.sqrt(pa * (1 - pa) / na + pb * (1 - pb) / nb)
    z = norm.ppf(1 - alpha / 2)
    diff = pb - pa
    return Bounds(diff, diff - z * se, diff + z * se, pa, pb)


def fixed_sample_size(p_baseline: float, p_candidate: float, *, tolerance: float, alpha: float, power: float) -> int:
    """Labels per version a one-sided fixed-horizon z-test at level α/2 needs to fail a candidate
    (p_candidate < p_baseline − tolerance) with the given power: the sample size a classical
    experiment would be planned with (statsmodels ``normal_sample_size_one_tail``)."""
    from scipy.stats import norm

    effect = p_baseline - p_candidate - tolerance
    if effect <= 0:
        raise ValueError("the candidate must be worse than the tolerance")
    variance = p_baseline * (1 - p_baseline) + p_candidate * (1 - p_candidate)
    z = norm.ppf(1 - alpha / 2) + norm.ppf(power)
    return math.ceil(z * z * variance / effect**2)


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


__all__ = [
    "CONFIDENCE_BINS",
    "DECISIONS",
    "FAIL",
    "INCONCLUSIVE",
    "LATENCY_EDGES_MS",
    "PASS",
    "Bounds",
    "class_mix_distance",
    "confidence_histogram",
    "distribution_distance",
    "dkw_constant",
    "dkw_radius",
    "estimate_difference",
    "fixed_proportion_difference",
    "fixed_sample_size",
    "judge",
    "latency_histogram",
    "mixture_radius",
    "mixture_rho",
    "proportion",
    "proportion_difference",
    "quantile_count_range",
    "quantile_ratio",
]
