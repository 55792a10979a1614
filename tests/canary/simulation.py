"""Seeded simulations of a canary polled every minute, judged by cvmon's own decision code.

Each minute both versions serve predictions (some with labels); a poll after minute m sees the
cumulative traffic, exactly what ``compare`` reads. :func:`simulate` builds the per-minute counts
and histograms, cumulates them into :class:`~monitor.server.services.canary.Summary` arrays with a
poll axis and runs :func:`~monitor.server.services.canary.judge_summaries` once for all polls.
:func:`fixed_verdicts` judges the same polls with the fixed-horizon counterpart of each metric
(Wald intervals, the Kolmogorov-Smirnov critical value, the normal interval of an order
statistic), at the same α share: what re-checking a classical test at every poll does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

from detectors import sequential as seq
from monitor.server.rollout_config import CanaryPolicy
from monitor.server.services.canary import Judgement, Mirror, Summary, judge_summaries, verdict

CLASSES = ("scratch", "dent", "ok")


@dataclass(frozen=True)
class Arm:
    predictions_per_minute: int
    labels_per_minute: int
    accuracy: float = 0.90
    confidence_a: float = 6.0
    latency_ms: float = 20.0
    error_rate: float = 0.01
    mix: tuple[float, ...] = (0.2, 0.3, 0.5)


def _per_minute(index: np.ndarray, minute: np.ndarray, minutes: int, bins: int) -> np.ndarray:
    return np.bincount(minute * bins + index, minlength=minutes * bins).reshape(minutes, bins).astype(np.float64)


def summaries(arm: Arm, minutes: int, rng: np.random.Generator) -> Summary:
    """Cumulative evidence of one version after each minute (leading axis: the poll)."""
    k = len(CLASSES)
    n = arm.predictions_per_minute * minutes
    minute = np.repeat(np.arange(minutes), arm.predictions_per_minute)
    errors = rng.random(n) < arm.error_rate
    ok = ~errors
    truth = rng.choice(k, size=n, p=arm.mix)
    correct = rng.random(n) < arm.accuracy
    predicted = np.where(correct, truth, (truth + rng.integers(1, k, n)) % k)
    confidence = 1 / k + (1 - 1 / k) * rng.beta(arm.confidence_a, 1.0, n)
    latency = arm.latency_ms * rng.lognormal(0.0, 0.3, n)
    conf_index = np.clip((confidence * seq.CONFIDENCE_BINS).astype(np.int64), 0, seq.CONFIDENCE_BINS - 1)
    # latencies on the grid's bins from 1 ms to 10 s (the whole grid has 2 000 bins)
    lo, hi = (int(np.searchsorted(seq.LATENCY_EDGES_MS, v)) for v in (1.0, 1e4))
    edges = seq.LATENCY_EDGES_MS[lo : hi + 1]
    lat_index = np.clip(np.searchsorted(edges, latency, side="right") - 1, 0, edges.size - 2)
    # the first labels_per_minute ok predictions of each minute get their label
    labelled = ok & (np.arange(n) % arm.predictions_per_minute < arm.labels_per_minute)
    hit = labelled & correct

    def cum(values: np.ndarray) -> np.ndarray:
        return np.cumsum(values, axis=0)

    def count(mask: np.ndarray) -> np.ndarray:
        return cum(np.bincount(minute[mask], minlength=minutes).astype(np.float64))

    def classes(mask: np.ndarray, of: np.ndarray) -> np.ndarray:
        return cum(_per_minute(of[mask], minute[mask], minutes, k))

    return Summary(
        predictions=cum(np.full(minutes, float(arm.predictions_per_minute))),
        errors=count(errors),
        confidence_hist=cum(_per_minute(conf_index[ok], minute[ok], minutes, seq.CONFIDENCE_BINS)),
        latency_hist=cum(_per_minute(lat_index, minute, minutes, edges.size - 1)),
        class_counts=classes(ok, predicted),
        labelled=count(labelled),
        correct=count(hit),
        class_tp=classes(hit, predicted),
        class_predicted=classes(labelled, predicted),
        class_true=classes(labelled, truth),
        map=np.full(minutes, np.nan),
        map_se=np.full(minutes, np.nan),
        latency_edges=edges,
    )


def simulate(
    baseline: Arm, candidate: Arm, policy: CanaryPolicy, *, minutes: int, seed: int
) -> tuple[Summary, Summary, list[Judgement], np.ndarray]:
    """Both versions' evidence at every poll, the judgements and the verdict of each poll."""
    rng = np.random.default_rng(seed)
    a, b = summaries(baseline, minutes, rng), summaries(candidate, minutes, rng)
    none = Mirror(np.zeros(minutes), np.zeros(minutes))
    judgements = judge_summaries(a, b, none, policy, task="classification", classes=CLASSES)
    return a, b, judgements, verdict(judgements)


def fixed_verdicts(a: Summary, b: Summary, judgements: list[Judgement], policy: CanaryPolicy) -> np.ndarray:
    """The verdict of each poll when every gating metric is judged by its fixed-horizon test at
    the same α share, tolerance and minimum evidence."""
    gating = [j for j in judgements if j.gating]
    alpha = policy.alpha / len(gating)
    z = stats.norm.ppf(1 - alpha / 2)
    decisions = []
    for j in gating:
        if j.metric == "accuracy":
            bounds = seq.fixed_proportion_difference(a.correct, a.labelled, b.correct, b.labelled, alpha=alpha)
        elif j.metric == "error_rate":
            bounds = seq.fixed_proportion_difference(a.errors, a.predictions, b.errors, b.predictions, alpha=alpha)
        elif j.metric == "confidence":
            bounds = _fixed_ks(a.confidence_hist, b.confidence_hist, alpha)
        elif j.metric == "class_mix":
            bounds = _fixed_class_mix(a.class_counts, b.class_counts, alpha)
        elif j.metric == "latency_p95":
            bounds = _fixed_quantile_ratio(a.latency_hist, b.latency_hist, a.latency_edges, z)
        else:
            raise AssertionError(f"no fixed-horizon counterpart for {j.metric}")
        assert j.tolerance is not None
        decision = seq.judge(bounds, j.tolerance, "higher" if j.worse == "higher" else "lower")
        floor = policy.min_labels if j.metric == "accuracy" else policy.min_predictions
        evidence = j.labels if j.metric == "accuracy" else j.samples
        decisions.append(np.where((evidence[0] >= floor) & (evidence[1] >= floor), decision, 0))
    stacked = np.stack(decisions)
    out = np.where((stacked == seq.PASS).all(axis=0), seq.PASS, seq.INCONCLUSIVE)
    return np.where((stacked == seq.FAIL).any(axis=0), seq.FAIL, out)


def _fixed_ks(ha: np.ndarray, hb: np.ndarray, alpha: float) -> seq.Bounds:
    """The two-sample KS test: D against kolmogi(α)·sqrt((n+m)/(nm)), the asymptotic critical value."""
    na, nb = ha.sum(axis=-1), hb.sum(axis=-1)
    gap = np.abs(np.cumsum(hb, axis=-1) / nb[..., None] - np.cumsum(ha, axis=-1) / na[..., None]).max(axis=-1)
    crit = special.kolmogi(alpha) * np.sqrt((na + nb) / (na * nb))
    return seq.Bounds(gap, np.maximum(gap - crit, 0), gap + crit, gap, gap)


def _fixed_class_mix(ca: np.ndarray, cb: np.ndarray, alpha: float) -> seq.Bounds:
    k = ca.shape[-1]
    na, nb = ca.sum(axis=-1, keepdims=True), cb.sum(axis=-1, keepdims=True)
    per = seq.fixed_proportion_difference(ca, na, cb, nb, alpha=alpha / k)
    gap, radius = np.abs(per.estimate), per.high - per.estimate
    return seq.Bounds(gap.max(-1), np.maximum(gap - radius, 0).max(-1), (gap + radius).max(-1), gap.max(-1), gap.max(-1))


def _fixed_quantile_ratio(ha: np.ndarray, hb: np.ndarray, edges: np.ndarray, z: float, q: float = 0.95) -> seq.Bounds:
    """The normal interval of the order statistic: ranks n·q ± z·sqrt(n·q·(1 − q)), per version."""

    def bounds(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n, cum = h.sum(axis=-1), np.cumsum(h, axis=-1)
        half = z * np.sqrt(n * q * (1 - q))
        lo_rank, hi_rank = np.maximum(np.floor(n * q - half), 1), np.minimum(np.ceil(n * q + half), n)
        lo = (cum < lo_rank[..., None]).sum(axis=-1)
        hi = (cum < hi_rank[..., None]).sum(axis=-1)
        return edges[lo], edges[np.minimum(hi + 1, edges.size - 1)]

    la, ua = bounds(ha)
    lb, ub = bounds(hb)
    est = np.sqrt(lb * ub) / np.sqrt(la * ua) - 1
    return seq.Bounds(est, lb / ua - 1, ub / la - 1, est, est)


def first_fail(verdicts: np.ndarray) -> int | None:
    """The first poll (0-based minute) whose verdict is fail."""
    hits = np.flatnonzero(verdicts == seq.FAIL)
    return int(hits[0]) if hits.size else None


def rate(hits: int, runs: int) -> str:
    half = 1.96 * math.sqrt(max(hits, 1) * (runs - hits) / runs) / runs
    return f"{hits / runs:.3f} (±{half:.3f}, {hits}/{runs} runs)"
