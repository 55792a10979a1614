"""detectors.sequential against closed forms, reference tools and its own guarantee by simulation.

Oracles: scipy quadrature of each mixture martingale (the closed forms are integrals), brute force
over every count, statsmodels for the fixed-horizon counterparts, Howard & Ramdas's closed-form
constant for the time-uniform DKW bound. Coverage: each confidence sequence, read after every
new observation of a seeded stream, misses the truth at some time in at most α of the runs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, special

from detectors import sequential as seq

ALPHA = 0.05


def test_mixture_radius_is_where_the_normal_mixture_martingale_reaches_one_over_alpha():
    """∫ exp(λS − λ²V/2) N(λ; 0, 1/ρ) dλ, integrated numerically, equals 1/α at S = radius·V."""
    info_opt = 500.0
    rho = seq.mixture_rho(info_opt, ALPHA)
    for v in (1.0, 50.0, 500.0, 20_000.0):
        s = float(seq.mixture_radius(v, ALPHA, info_opt)) * v

        def integrand(lam: float, s: float = s, v: float = v) -> float:
            return math.exp(lam * s - lam * lam * v / 2) * math.sqrt(rho / (2 * math.pi)) * math.exp(-rho * lam * lam / 2)

        peak = s / (v + rho)
        width = 12 / math.sqrt(v + rho)
        value, _ = integrate.quad(integrand, peak - width, peak + width, epsabs=0, epsrel=1e-11, limit=200)
        assert value == pytest.approx(1 / ALPHA, rel=1e-7)


def test_mixture_rho_minimises_the_boundary_near_its_target():
    """Howard et al.'s ρ makes the boundary at v_opt (nearly) the smallest over ρ."""
    v, c = 1000.0, 2 * math.log(1 / ALPHA)
    rho = seq.mixture_rho(v, ALPHA)
    grid = np.geomspace(rho / 20, rho * 20, 2001)
    boundary = np.sqrt((v + grid) * (np.log1p(v / grid) + c))
    best = boundary.min()
    assert math.sqrt((v + rho) * (math.log1p(v / rho) + c)) <= best * 1.001


def test_proportion_is_the_exact_beta_binomial_mixture():
    """The CS edges are where the uniform-prior mixture (integrated numerically) equals 1/α."""
    for x, n in ((0, 5), (3, 10), (47, 50), (480, 500), (1990, 2000)):
        b = seq.proportion(x, n, alpha=ALPHA)
        for p in (float(b.low), float(b.high)):
            if p in (0.0, 1.0):
                continue

            def ratio(q: float, x: int = x, n: int = n, p: float = p) -> float:
                return math.exp(special.xlogy(x, q / p) + special.xlog1py(n - x, (p - q) / (1 - p)))

            value, _ = integrate.quad(ratio, 0, 1, points=[x / n], epsabs=0, epsrel=1e-12, limit=400)
            assert value == pytest.approx(1 / ALPHA, rel=1e-6), (x, n, p)
        assert float(b.low) <= x / n <= float(b.high)


def test_quantile_count_range_matches_brute_force():
    for n, q, alpha in ((1, 0.95, 0.05), (20, 0.5, 0.05), (500, 0.95, 0.01), (3000, 0.99, 0.025)):
        k = np.arange(n + 1, dtype=np.float64)
        log_m = special.betaln(k + 1, n - k + 1) - special.xlogy(k, q) - special.xlog1py(n - k, -q)
        accepted = np.flatnonzero(log_m < math.log(1 / alpha))
        k1, k2 = seq.quantile_count_range(n, q, alpha)
        if accepted.size and (accepted.min() <= math.floor(n * q) <= accepted.max()):
            assert (int(k1), int(k2)) == (accepted.min(), accepted.max()), (n, q)
        else:
            assert (int(k1), int(k2)) == (0, n)


def test_dkw_constant_is_below_the_papers_closed_form():
    """Howard & Ramdas 2022, Theorem 2: C ≤ 0.8·log(1612/α), and close to it."""
    for alpha in (0.001, 0.01, 0.05, 0.1, 0.2):
        c = seq.dkw_constant(alpha)
        closed = 0.8 * math.log(1612 / alpha)
        assert 0.9 * closed < c <= closed


def test_time_uniform_band_is_wider_than_the_fixed_time_dkw():
    """Massart's fixed-n DKW radius sqrt(log(2/α)/(2n)) is smaller at every n: uniformity costs."""
    n = np.array([1, 10, 100, 10_000, 10**6])
    assert (seq.dkw_radius(n, ALPHA) > np.sqrt(np.log(2 / ALPHA) / (2 * n))).all()


def test_fixed_horizon_wald_interval_is_statsmodels():
    from statsmodels.stats.proportion import confint_proportions_2indep

    b = seq.fixed_proportion_difference(812, 900, 401, 470, alpha=ALPHA)
    low, high = confint_proportions_2indep(401, 470, 812, 900, method="wald", compare="diff", alpha=ALPHA)
    assert (float(b.low), float(b.high)) == pytest.approx((low, high), rel=1e-12)


def test_fixed_sample_size_is_statsmodels():
    from statsmodels.stats.power import normal_sample_size_one_tail

    for pa, pb, tol in ((0.9, 0.87, 0.0), (0.9, 0.87, 0.01), (0.8, 0.75, 0.02)):
        ours = seq.fixed_sample_size(pa, pb, tolerance=tol, alpha=ALPHA, power=0.8)
        variance = pa * (1 - pa) + pb * (1 - pb)
        theirs = normal_sample_size_one_tail(pa - pb - tol, 0.8, ALPHA / 2, std_null=math.sqrt(variance))
        assert ours == math.ceil(theirs)


def test_judge_reads_fail_pass_and_inconclusive_from_the_bounds():
    b = seq.Bounds(*(np.array(v, dtype=float) for v in ([-0.05, 0.0, -0.02], [-0.08, -0.004, -0.05], [-0.03, 0.004, 0.01], [0] * 3, [0] * 3)))
    assert seq.judge(b, 0.01, "lower").tolist() == [seq.FAIL, seq.PASS, seq.INCONCLUSIVE]
    # a higher value worse: latency ratio bounds
    b = seq.Bounds(*(np.array(v, dtype=float) for v in ([0.3, 0.0], [0.2, -0.05], [0.4, 0.05], [0] * 2, [0] * 2)))
    assert seq.judge(b, 0.1, "higher").tolist() == [seq.FAIL, seq.PASS]


# --------------------------------------------------------------------------------------------
# coverage: the truth stays inside at every step of a stream, in at least 1 − α of the runs


def _ever_missed(low: np.ndarray, high: np.ndarray, truth: float) -> float:
    return float(((low > truth) | (high < truth)).any(axis=-1).mean())


def test_proportion_difference_covers_uniformly_over_time():
    rng = np.random.default_rng(11)
    runs, steps = 400, 3000
    xa = np.cumsum(rng.random((runs, steps)) < 0.9, axis=1)
    xb = np.cumsum(rng.random((runs, steps)) < 0.9, axis=1)
    n = np.arange(1, steps + 1)
    b = seq.proportion_difference(xa, n, xb, n, alpha=ALPHA)
    keep = n >= 30  # callers decide from min_labels on
    missed = _ever_missed(b.low[:, keep], b.high[:, keep], 0.0)
    fixed = seq.fixed_proportion_difference(xa, n, xb, n, alpha=ALPHA)
    fixed_missed = _ever_missed(fixed.low[:, keep], fixed.high[:, keep], 0.0)
    print(f"difference of proportions, {steps} steps: anytime CS missed in {missed:.3f} of runs, Wald at every step {fixed_missed:.3f}")
    assert missed <= ALPHA
    assert fixed_missed > 4 * ALPHA


def test_proportion_covers_uniformly_over_time():
    rng = np.random.default_rng(12)
    runs, steps = 200, 1500
    x = np.cumsum(rng.random((runs, steps)) < 0.97, axis=1)
    b = seq.proportion(x, np.arange(1, steps + 1), alpha=ALPHA)
    assert _ever_missed(b.low, b.high, 0.97) <= ALPHA


def test_distribution_distance_covers_zero_under_no_shift():
    rng = np.random.default_rng(13)
    runs, minutes, per_minute = 60, 300, 10
    missed = 0
    for _ in range(runs):
        ha = np.cumsum(np.stack([seq.confidence_histogram(rng.beta(5, 1, per_minute)) for _ in range(minutes)]), axis=0)
        hb = np.cumsum(np.stack([seq.confidence_histogram(rng.beta(5, 1, per_minute)) for _ in range(minutes)]), axis=0)
        missed += bool((seq.distribution_distance(ha, hb, alpha=ALPHA).low > 0).any())
    assert missed / runs <= ALPHA


def test_quantile_ratio_covers_the_true_ratio():
    """Two lognormal latencies whose p95 differ by 10 %: the CS holds 0.10 at every poll."""
    rng = np.random.default_rng(14)
    runs, minutes, per_minute = 80, 200, 20
    missed = 0
    for _ in range(runs):
        ha = np.cumsum(np.stack([seq.latency_histogram(rng.lognormal(3.0, 0.4, per_minute)) for _ in range(minutes)]), axis=0)
        hb = np.cumsum(np.stack([seq.latency_histogram(1.1 * rng.lognormal(3.0, 0.4, per_minute)) for _ in range(minutes)]), axis=0)
        b = seq.quantile_ratio(ha, hb, seq.LATENCY_EDGES_MS, q=0.95, alpha=ALPHA)
        missed += bool(((b.low > 0.1) | (b.high < 0.1)).any())
    assert missed / runs <= ALPHA


def test_class_mix_distance_covers_zero_under_no_shift():
    rng = np.random.default_rng(15)
    mix = np.array([0.05, 0.15, 0.3, 0.5])
    runs, steps = 200, 1000
    ca = np.cumsum(rng.multinomial(3, mix, size=(runs, steps)), axis=1)
    cb = np.cumsum(rng.multinomial(1, mix, size=(runs, steps)), axis=1)
    b = seq.class_mix_distance(ca[:, 100:], cb[:, 100:], alpha=ALPHA)
    assert float((b.low > 0).any(axis=1).mean()) <= ALPHA


def test_estimate_difference_covers_with_known_standard_errors():
    """Running means of normal data with their true standard errors: a Brownian motion."""
    rng = np.random.default_rng(16)
    runs, steps = 300, 2000
    n = np.arange(1, steps + 1)
    ma = np.cumsum(rng.normal(0.5, 0.2, (runs, steps)), axis=1) / n
    mb = np.cumsum(rng.normal(0.5, 0.2, (runs, steps)), axis=1) / n
    se = 0.2 / np.sqrt(n)
    b = seq.estimate_difference(ma, se, mb, se, alpha=ALPHA)
    assert _ever_missed(b.low, b.high, 0.0) <= ALPHA


@pytest.mark.parametrize("alpha", [0.0, 1.0, -0.1])
def test_bad_alpha_is_refused(alpha):
    with pytest.raises(ValueError, match="alpha"):
        seq.mixture_radius(10.0, alpha, 100.0)
