"""Version comparison for canary gates: two versions' traffic, one anytime-valid decision per metric.

:func:`compare` reads both versions' predictions since ``since`` (the candidate's first prediction
by default), summarises each version (:func:`summarize`: counts and histograms), and judges every
metric of the model's ``canary:`` policy with the confidence sequences of
:mod:`detectors.sequential` (:func:`judge_summaries`). :func:`record` stores the decisions (what
``cvmon_canary_decision`` exports) and emits a ``canary.verdict`` event when the verdict changes.

The verdict's false-fail rate is the policy's α however often it is polled: α is split evenly over
the gating metrics (Bonferroni), each judged by a confidence sequence at its share. Label-free
metrics (confidence distribution, class mix, latency p95, error rate, agreement on mirrored
inputs) decide first; labelled ones (accuracy, precision and recall of chosen classes, mAP) as
labels arrive. A metric decides nothing before ``min_predictions`` (``min_labels``) per version.

Three callers: the API (``GET /v1/models/{model}/compare``, Argo Rollouts and Flagger), ``cvmon
canary check`` and a console view (``compare`` then ``record``, in one transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy import Connection

from detectors import sequential as seq
from monitor.server.rollout_config import METRICS, AutomationConfig, CanaryPolicy
from monitor.server.services.models import listing, model_specs, model_versions
from monitor.server.store import tables as t
from monitor.server.store.canary_reads import VersionTraffic, read_version_traffic, version_first_seen

Array = NDArray[np.float64]
OVERALL = "overall"
#: Bootstrap of mAP: replicates, and the labelled images per version it resamples (the first ones).
BOOTSTRAP_REPLICATES = 64
BOOTSTRAP_IMAGES = 1000


class CompareError(ValueError):
    """A comparison that cannot be made; the message says why."""


class UnknownSubject(CompareError):
    """The model, or one of the versions, has never been seen."""


@dataclass(frozen=True)
class Summary:
    """One version's evidence: counts and histograms (arrays may carry a leading poll axis)."""

    predictions: Array
    errors: Array
    confidence_hist: Array
    latency_hist: Array
    class_counts: Array  # predicted classes of ok predictions
    labelled: Array
    correct: Array
    class_tp: Array  # labelled predictions of class c that are correct
    class_predicted: Array  # labelled predictions of class c
    class_true: Array  # labelled predictions whose label is c
    map: Array  # NaN: no detection ground truth
    map_se: Array
    #: the edges of ``latency_hist`` (a slice of LATENCY_EDGES_MS; the same for both versions)
    latency_edges: Array = field(default_factory=lambda: seq.LATENCY_EDGES_MS)


@dataclass(frozen=True)
class Mirror:
    """Inputs both versions predicted (same ``input_hash``) and how many they agreed on."""

    shared: Array
    agree: Array


@dataclass(frozen=True)
class Judgement:
    """One metric judged (arrays when the summaries had a poll axis)."""

    metric: str
    gating: bool
    tolerance: float | None
    worse: str
    test: str
    bounds: seq.Bounds
    decision: NDArray[np.int8]
    samples: tuple[Array, Array]
    labels: tuple[Array, Array]


_TESTS = {
    "accuracy": "mixture SPRT, difference of proportions",
    "precision": "mixture SPRT, difference of proportions",
    "recall": "mixture SPRT, difference of proportions",
    "error_rate": "mixture SPRT, difference of proportions",
    "map": "normal mixture on bootstrap standard errors",
    "latency_p95": "fixed-quantile confidence sequences (beta-binomial)",
    "confidence": "time-uniform DKW bands, Kolmogorov-Smirnov distance",
    "class_mix": "mixture SPRT per class, Bonferroni",
    "agreement": "beta-binomial mixture, one proportion",
}


def applicable(policy: CanaryPolicy, task: str, classes: Sequence[str]) -> list[tuple[str, float | None]]:
    """The metrics a comparison of this model reports, with their tolerance (None: not gating)."""
    if task == "detection":
        names = ["map", "error_rate", "latency_p95"]
    else:
        names = ["accuracy", "error_rate", "latency_p95", "confidence", "class_mix", "agreement"]
    out = [(m, policy.gates.get(m)) for m in names]
    if task != "detection":
        for key, tolerance in policy.gates.items():
            _, _, cls = key.partition(":")
            if cls and cls in classes:
                out.append((key, tolerance))
    return out


def judge_summaries(
    baseline: Summary,
    candidate: Summary,
    mirror: Mirror,
    policy: CanaryPolicy,
    *,
    task: str,
    classes: Sequence[str],
) -> list[Judgement]:
    """Every applicable metric judged at its share of α (vectorised over a leading poll axis)."""
    metrics = applicable(policy, task, classes)
    gating = sum(tolerance is not None for _, tolerance in metrics)
    alpha = policy.alpha / max(gating, 1)
    a, b = baseline, candidate
    out = []
    for name, tolerance in metrics:
        base, _, cls = name.partition(":")
        labelled = METRICS[base][1]
        samples = (a.predictions, b.predictions)
        labels = (a.labelled, b.labelled)
        if base == "accuracy":
            bounds = seq.proportion_difference(a.correct, a.labelled, b.correct, b.labelled, alpha=alpha)
        elif base in ("precision", "recall"):
            i = list(classes).index(cls)
            den_a, den_b = (a.class_predicted, b.class_predicted) if base == "precision" else (a.class_true, b.class_true)
            labels = (den_a[..., i], den_b[..., i])
            bounds = seq.proportion_difference(a.class_tp[..., i], labels[0], b.class_tp[..., i], labels[1], alpha=alpha)
        elif base == "map":
            bounds = seq.estimate_difference(a.map, a.map_se, b.map, b.map_se, alpha=alpha)
        elif base == "error_rate":
            bounds = seq.proportion_difference(a.errors, a.predictions, b.errors, b.predictions, alpha=alpha)
        elif base == "latency_p95":
            samples = (a.latency_hist.sum(axis=-1), b.latency_hist.sum(axis=-1))
            if not np.array_equal(a.latency_edges, b.latency_edges):
                raise ValueError("both versions' latency histograms must have the same edges")
            ha, hb, edges = _used_bins(a.latency_hist, b.latency_hist, a.latency_edges)
            bounds = seq.quantile_ratio(ha, hb, edges, q=0.95, alpha=alpha)
        elif base == "confidence":
            samples = (a.confidence_hist.sum(axis=-1), b.confidence_hist.sum(axis=-1))
            bounds = seq.distribution_distance(a.confidence_hist, b.confidence_hist, alpha=alpha)
        elif base == "class_mix":
            samples = (a.class_counts.sum(axis=-1), b.class_counts.sum(axis=-1))
            bounds = seq.class_mix_distance(a.class_counts, b.class_counts, alpha=alpha)
        else:  # agreement: the difference is agreement − 1, its regression the disagreement rate
            samples = (mirror.shared, mirror.shared)
            rate = seq.proportion(mirror.agree, mirror.shared, alpha=alpha)
            ones = np.ones_like(rate.estimate)
            bounds = seq.Bounds(rate.estimate - 1, rate.low - 1, rate.high - 1, ones, rate.estimate)
        worse = METRICS[base][0]
        # a metric that does not gate is reported with its interval and decides nothing
        decision = seq.judge(bounds, tolerance, "higher" if worse == "higher" else "lower") if tolerance is not None else np.zeros((), np.int8)
        evidence = labels if labelled else samples
        floor = policy.min_labels if labelled else policy.min_predictions
        enough = (np.asarray(evidence[0]) >= floor) & (np.asarray(evidence[1]) >= floor)
        if base == "map":
            enough &= np.isfinite(np.asarray(a.map)) & np.isfinite(np.asarray(b.map))
        decision = np.where(enough, decision, seq.INCONCLUSIVE).astype(np.int8)
        out.append(Judgement(name, tolerance is not None, tolerance, worse, _TESTS[base], bounds, decision, samples, labels))
    return out


def _used_bins(a: Array, b: Array, edges: Array) -> tuple[Array, Array, Array]:
    """Both histograms cut to the bins either uses (the rest are zeros in both): the latency
    grid spans 1 µs to 1 000 s, traffic a few hundred of its bins."""
    used = np.flatnonzero((a.reshape(-1, a.shape[-1]) + b.reshape(-1, b.shape[-1])).any(axis=0))
    if used.size == 0:
        return a, b, edges
    lo, hi = int(used[0]), int(used[-1]) + 1
    return a[..., lo:hi], b[..., lo:hi], edges[lo : hi + 1]


def verdict(judgements: Sequence[Judgement]) -> NDArray[np.int8]:
    """fail when a gating metric fails, pass when every gating metric passes, else inconclusive."""
    gating = [j.decision for j in judgements if j.gating]
    if not gating:
        return np.asarray(seq.INCONCLUSIVE, dtype=np.int8)
    stacked = np.stack(np.broadcast_arrays(*gating))
    out = np.where((stacked == seq.PASS).all(axis=0), seq.PASS, seq.INCONCLUSIVE)
    return np.where((stacked == seq.FAIL).any(axis=0), seq.FAIL, out).astype(np.int8)


# --------------------------------------------------------------------------------------------
# summaries of stored traffic


def summarize(traffic: VersionTraffic, n_classes: int, *, task: str, seed: int = 0) -> Summary:
    """Counts and histograms of one version's traffic (scalars; see :class:`Summary`)."""
    ok = traffic.ok
    k = max(n_classes, 1)
    predicted = traffic.predicted_class
    valid = ok & (predicted >= 0) & (predicted < k)
    labelled = valid & (traffic.label >= 0) & (traffic.label < k)
    hit = labelled & (predicted == traffic.label)
    map_value, map_se = _map_bootstrap(traffic, seed) if task == "detection" else (np.nan, np.nan)
    def f(value: Any) -> Array:
        return np.asarray(value, dtype=np.float64)

    return Summary(
        predictions=f(len(traffic)),
        errors=f((~ok).sum()),
        confidence_hist=f(seq.confidence_histogram(traffic.confidence[ok])),
        latency_hist=f(seq.latency_histogram(traffic.latency_ms)),
        class_counts=f(np.bincount(predicted[valid], minlength=k)),
        labelled=f(labelled.sum() if task != "detection" else traffic.labelled.sum()),
        correct=f(hit.sum()),
        class_tp=f(np.bincount(predicted[hit], minlength=k)),
        class_predicted=f(np.bincount(predicted[labelled], minlength=k)),
        class_true=f(np.bincount(traffic.label[labelled], minlength=k)),
        map=f(map_value),
        map_se=f(map_se),
    )


def mirror_of(baseline: VersionTraffic, candidate: VersionTraffic) -> Mirror:
    """Agreement of the two versions' predicted classes on inputs both saw (the first prediction
    of each ``input_hash`` in each version)."""
    first: dict[str, int] = {}
    for h, c, ok in zip(baseline.input_hash, baseline.predicted_class.tolist(), baseline.ok.tolist(), strict=True):
        if h is not None and ok and h not in first:
            first[h] = c
    seen: set[str] = set()
    shared = agree = 0
    for h, c, ok in zip(candidate.input_hash, candidate.predicted_class.tolist(), candidate.ok.tolist(), strict=True):
        if h is None or not ok or h in seen or h not in first:
            continue
        seen.add(h)
        shared += 1
        agree += first[h] == c
    return Mirror(np.asarray(shared, dtype=np.float64), np.asarray(agree, dtype=np.float64))


def _map_bootstrap(traffic: VersionTraffic, seed: int) -> tuple[float, float]:
    """mAP@[.5:.95] of the labelled images and its bootstrap standard error (images resampled
    with replacement; the first :data:`BOOTSTRAP_IMAGES` labelled images)."""
    from monitor.metrics import DetectionState, detection_metrics
    from monitor.server.services.decode import StoredImage, images_detection_state

    idx = np.flatnonzero(traffic.labelled & traffic.ok)[:BOOTSTRAP_IMAGES]
    if idx.size == 0:
        return np.nan, np.nan
    images = [
        StoredImage(traffic.prediction_id[i], traffic.boxes[i], traffic.box_classes[i], traffic.box_scores[i],
                    traffic.gt_boxes[i], traffic.gt_classes[i], traffic.gt_crowd[i])
        for i in idx.tolist()
    ]  # fmt: skip
    per_image = [images_detection_state([im]) for im in images]
    whole = detection_metrics(DetectionState.merge(*per_image), per_class=False).ap
    if whole is None:
        return np.nan, np.nan
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(BOOTSTRAP_REPLICATES):
        pick = rng.integers(0, len(per_image), len(per_image))
        ap = detection_metrics(DetectionState.merge(*(per_image[i] for i in pick.tolist())), per_class=False).ap
        values.append(np.nan if ap is None else ap)
    return float(whole), float(np.nanstd(values, ddof=1))


# --------------------------------------------------------------------------------------------
# the comparison


@dataclass(frozen=True)
class MetricResult:
    """One metric of a comparison: both values, the difference with its confidence-sequence
    interval, the evidence and the decision."""

    metric: str
    gating: bool
    #: tolerated regression (None: reported, not gating)
    tolerance: float | None
    #: "lower" when a lower value is worse (accuracy), "higher" when a higher one is (latency)
    worse: str
    test: str
    baseline: float | None
    candidate: float | None
    #: candidate − baseline (latency_p95: candidate / baseline − 1; distances: the distance)
    difference: float | None
    low: float | None
    high: float | None
    samples_baseline: int
    samples_candidate: int
    labels_baseline: int
    labels_candidate: int
    #: pass | fail | inconclusive; None for a metric that does not gate
    decision: str | None


@dataclass(frozen=True)
class Comparison:
    model: str
    baseline: str
    candidate: str
    since: datetime
    until: datetime
    alpha: float
    verdict: str
    metrics: tuple[MetricResult, ...]

    @property
    def labels(self) -> tuple[int, int]:
        """Labelled predictions of each version."""
        first = next((m for m in self.metrics if m.metric in ("accuracy", "map")), None)
        return (first.labels_baseline, first.labels_candidate) if first else (0, 0)


def _float(value: Any) -> float | None:
    number = float(value)
    return number if np.isfinite(number) else None


def compare(
    conn: Connection,
    model: str,
    baseline: str,
    candidate: str,
    *,
    policy: CanaryPolicy,
    until: datetime,
    since: datetime | None = None,
) -> Comparison:
    """Judge ``candidate`` against ``baseline`` on their traffic in ``[since, until)``."""
    spec = model_specs(conn, [model]).get(model)
    if spec is None:
        raise UnknownSubject(f"no model {model!r}")
    if baseline == candidate:
        raise CompareError("baseline and candidate must be different versions")
    first_seen = {v: version_first_seen(conn, model, v) for v in (baseline, candidate)}
    for version, seen in first_seen.items():
        if seen is None:
            known = model_versions(conn, model)
            have = f"; its versions: {listing(known)}" if known else ""
            raise UnknownSubject(f"version {version!r} of {model!r} has sent no prediction yet{have}")
    if since is None:
        since = first_seen[candidate]
        assert since is not None
    if since >= until:
        raise CompareError("since must be before now")
    traffic = [read_version_traffic(conn, model, v, spec.task, since, until, limit=policy.max_predictions) for v in (baseline, candidate)]
    classes = list(spec.classes)
    a, b = (summarize(tr, len(classes), task=spec.task, seed=len(tr)) for tr in traffic)
    judgements = judge_summaries(a, b, mirror_of(*traffic), policy, task=spec.task, classes=classes)
    results = tuple(
        MetricResult(
            metric=j.metric, gating=j.gating, tolerance=j.tolerance, worse=j.worse, test=j.test,
            baseline=_float(j.bounds.baseline), candidate=_float(j.bounds.candidate), difference=_float(j.bounds.estimate),
            low=_float(j.bounds.low), high=_float(j.bounds.high),
            samples_baseline=int(j.samples[0]), samples_candidate=int(j.samples[1]),
            labels_baseline=int(j.labels[0]), labels_candidate=int(j.labels[1]),
            decision=seq.DECISIONS[int(j.decision)] if j.gating else None,
        )
        for j in judgements
    )  # fmt: skip
    overall = seq.DECISIONS[int(verdict(judgements))]
    return Comparison(model, baseline, candidate, since, until, policy.alpha, overall, results)


def record(
    conn: Connection, comparison: Comparison, *, now: datetime, automation: AutomationConfig
) -> str | None:
    """Store the comparison's decisions (replacing the pair's previous ones) and emit a
    ``canary.verdict`` event when the verdict became pass or fail; returns the previous verdict."""
    from monitor.server.services.automation import emit

    c = comparison
    d = t.canary_decisions.c
    pair = [d.model == c.model, d.baseline == c.baseline, d.candidate == c.candidate]
    previous = conn.execute(sa.select(d.decision).where(*pair, d.metric == OVERALL)).scalar()
    code = {v: k for k, v in seq.DECISIONS.items()}
    labels = sum(c.labels)
    rows = [
        {"model": c.model, "baseline": c.baseline, "candidate": c.candidate, "metric": m.metric,
         "decision": code[m.decision or "inconclusive"], "gating": int(m.gating), "estimate": m.difference, "low": m.low, "high": m.high,
         "samples": m.samples_baseline + m.samples_candidate, "labels": m.labels_baseline + m.labels_candidate,
         "since": c.since, "evaluated_at": now}
        for m in c.metrics
    ]  # fmt: skip
    samples = max((m.samples_baseline + m.samples_candidate for m in c.metrics), default=0)
    rows.append({"model": c.model, "baseline": c.baseline, "candidate": c.candidate, "metric": OVERALL,
                 "decision": code[c.verdict], "gating": 1, "estimate": None, "low": None, "high": None,
                 "samples": samples, "labels": labels, "since": c.since, "evaluated_at": now})  # fmt: skip
    conn.execute(sa.delete(t.canary_decisions).where(*pair))
    conn.execute(sa.insert(t.canary_decisions), rows)
    before = None if previous is None else seq.DECISIONS[int(previous)]
    if c.verdict != before and c.verdict in ("pass", "fail"):
        emit(
            conn, automation, model=c.model, kind="canary.verdict", key=f"{c.baseline}\x00{c.candidate}\x00{c.since.isoformat()}\x00{c.verdict}",
            data=_verdict_data(c), now=now,
        )  # fmt: skip
    return before


def _verdict_data(c: Comparison) -> dict[str, Any]:
    return {
        "baseline": c.baseline, "candidate": c.candidate, "verdict": c.verdict, "alpha": c.alpha,
        "since": c.since.isoformat(), "until": c.until.isoformat(),
        "failed": [m.metric for m in c.metrics if m.decision == "fail" and m.gating],
    }  # fmt: skip


@dataclass(frozen=True)
class StoredDecision:
    model: str
    baseline: str
    candidate: str
    metric: str
    decision: int
    evaluated_at: datetime


def stored_decisions(
    conn: Connection, *, newer_than: datetime, allows_model: Callable[[str], bool] = lambda _: True
) -> list[StoredDecision]:
    """Decisions recorded since ``newer_than`` (what /metrics exports)."""
    d = t.canary_decisions.c
    rows = conn.execute(
        sa.select(d.model, d.baseline, d.candidate, d.metric, d.decision, d.evaluated_at)
        .where(d.evaluated_at >= newer_than, d.gating == 1)
        .order_by(d.model, d.baseline, d.candidate, d.metric)
    ).all()
    return [StoredDecision(*r) for r in rows if allows_model(r.model)]


def active_candidates(conn: Connection, model: str, *, newer_than: datetime) -> list[tuple[str, str]]:
    """(baseline, candidate) pairs of ``model`` compared since ``newer_than`` whose verdict is not
    pass: canaries in progress (a rollback request concerns their candidate)."""
    d = t.canary_decisions.c
    rows = conn.execute(
        sa.select(d.baseline, d.candidate).where(
            d.model == model, d.metric == OVERALL, d.evaluated_at >= newer_than, d.decision != seq.PASS
        )
    ).all()
    return [(r.baseline, r.candidate) for r in rows]

