"""Pure: the one-line verdict of every section, the week's notable changes and the Actions list.

The actions follow the runbook guidance of the reference (docs/reports.md quotes it):

* page-worthy first: an SLO whose error budget is spent or burning ("Page: SLO burn-rate high …;
  immediate rollback trigger on SLO breach"), a significant accuracy drop;
* "if accuracy drop, identify cohort and rollback if needed", "confirm data pipeline integrity
  (no corrupted frames)": an action names the cohort, what flagged it and since when, what to
  check, and how many recent images of it to label;
* drift without a quality drop is a ticket, not a page ("Ticket: non-urgent drift detection"),
  and drift is not retrained on blindly ("false positives with seasonality");
* false negatives -> targeted labelling; false positives -> threshold and label review;
  calibration above ECE 0.05 -> recalibrate; latency -> saturation and batch size; serving
  errors above 1 % -> input validation and restarts;
* where labels are too few to judge a class or a cohort, say so and say how many to label.

How many images to label: enough to measure the slice's accuracy to ±5 points at 95 %
confidence, ``1.96² p (1 − p) / 0.05²`` at the current accuracy ``p`` (385 at p = 0.5, 196 at
0.85), rounded up to a multiple of 50.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

from monitor.server.reports import fmt
from monitor.server.reports.data import CohortRow, DriftHit, DriftTrend, ReportData, SloStatus, WeekValue
from monitor.server.reports.views import (
    MIN_LABELS,
    busiest,
    cohort_below,
    cohort_dropped,
    cohort_gap,
    overconfidence,
    proportion_z,
    rank_cohorts,
    significant_primary_change,
    significant_share_change,
)

Urgency = Literal["now", "this week", "when convenient"]
URGENCIES: Final[tuple[Urgency, ...]] = ("now", "this week", "when convenient")
#: Calibration target of the reference runbook (M8: ECE < 0.05).
ECE_TARGET: Final = 0.05
#: Serving error rate target of the reference runbook (M9: < 1 %).
ERROR_RATE_TARGET: Final = 0.01
#: A p95 latency change worth reporting.
LATENCY_CHANGE: Final = 0.20
#: A drop of accuracy this large (and significant) on a cohort is worth doing something now.
URGENT_DROP: Final = 0.05
#: Gap between the label-free estimate and realised accuracy that makes the estimate untrustworthy.
ESTIMATE_GAP: Final = 0.05
#: Krippendorff's alpha below which conclusions from labels are not even tentative (his bound).
ALPHA_TENTATIVE: Final = 0.667
_MARGIN: Final = 0.05
_FEATURE_ORDER: Final = {
    "embedding": 0,
    "embeddings": 0,
    "confidence": 1,
    "confidences": 1,
    "box_area": 2,
    "boxes_per_image": 3,
}
_FEATURES: Final = {
    "embedding": "embeddings",
    "embeddings": "embeddings",
    "confidence": "confidences",
    "confidences": "confidences",
    "class_mix": "class mix",
    "classes": "class mix",
    "metadata": "metadata",
    "": "inputs",
}


@dataclass(frozen=True, slots=True)
class Notable:
    """A change since last week worth a line in the summary."""

    what: str  # "accuracy on camera cam-3 (v1)"
    text: str  # "fell 6.1 points to 85.1% (n=1 240)"
    worse: bool
    #: how remarkable: standard errors for shares, tenths of a relative change for latency
    score: float


@dataclass(frozen=True, slots=True)
class Action:
    urgency: Urgency
    text: str


@dataclass(frozen=True, slots=True)
class Verdicts:
    summary: str
    quality: str
    calibration: str
    drift: str
    service: str
    actions_line: str
    changes: tuple[Notable, ...]
    actions: tuple[Action, ...]
    #: annotator agreement ("" without a multiply-annotated prediction)
    labels: str = ""


def verdicts(data: ReportData) -> Verdicts:
    """Every verdict and action of the report."""
    changes = notable_changes(data)
    actions = build_actions(data)
    return Verdicts(
        summary=summary_verdict(data, changes),
        quality=quality_verdict(data),
        calibration=calibration_verdict(data),
        drift=drift_verdict(data),
        service=service_verdict(data),
        actions_line=actions_verdict(actions),
        changes=changes,
        actions=actions,
        labels=labels_verdict(data),
    )


# --------------------------------------------------------------------------------------------
# words


def cohort_name(row: CohortRow, data: ReportData) -> str:
    """``camera cam-3``, with the version when the week had several."""
    name = f"{row.key} {row.value}"
    return f"{name} ({row.version})" if len(data.versions) > 1 else name


def feature_words(feature: str) -> str:
    """``embedding`` -> ``embeddings``: what a detector looked at, as a reader says it."""
    return _FEATURES.get(feature, feature)


def labels_to_measure(accuracy: float | None) -> int:
    """Images to label to know a slice's accuracy to ±5 points (95 %), rounded up to 50."""
    p = 0.5 if accuracy is None else min(max(accuracy, 0.05), 0.95)
    n = 1.96**2 * p * (1 - p) / _MARGIN**2
    return max(50, math.ceil(n / 50) * 50)


def _fell(value: WeekValue, *, share: bool = True) -> str:
    """``fell 6.1 points to 85.1% (n=1 240)`` / ``rose ...``."""
    delta = value.delta or 0.0
    verb = "fell" if delta < 0 else "rose"
    amount = fmt.points(abs(delta)).lstrip("+") if share else fmt.decimal(abs(delta))
    level = fmt.pct(value.current) if share else fmt.decimal(value.current)
    return f"{verb} {amount} to {level} (n={fmt.num(value.n)})"


def _primary_name(data: ReportData) -> str:
    return "Accuracy" if data.task == "classification" else "mAP"


# --------------------------------------------------------------------------------------------
# notable changes (summary)


def notable_changes(data: ReportData, top: int = 5) -> tuple[Notable, ...]:
    """The most remarkable significant changes since last week, worst first."""
    share = data.task == "classification"
    found: list[Notable] = []

    def add_share(what: str, value: WeekValue, *, primary: bool = False, worse_when_down: bool = True) -> None:
        as_share = share or not primary  # mAP is a score, not a share: no z-test, no percent
        if not (significant_primary_change(value, data.task) if primary else significant_share_change(value)):
            return
        z = proportion_z(value) if as_share else None
        delta = value.delta or 0.0
        score = abs(z) if z is not None and math.isfinite(z) else abs(delta) * 100
        found.append(Notable(what, _fell(value, share=as_share), (delta < 0) == worse_when_down, score))

    add_share(f"{data.primary_metric} overall", data.overall, primary=True)
    for row in data.cohorts:
        add_share(f"{data.primary_metric} on {cohort_name(row, data)}", row.primary, primary=True)
    for c in data.classes:
        add_share(f"recall of class {c.name!r}", c.recall)
        add_share(f"precision of class {c.name!r}", c.precision)
    add_share("label coverage", data.overall_label_coverage)
    for v in data.versions:
        p95 = v.latency_p95_ms
        if p95.current and p95.previous and p95.n >= 100 and p95.previous_n >= 100:
            rel = p95.current / p95.previous - 1
            if abs(rel) >= LATENCY_CHANGE:
                verb = "rose" if rel > 0 else "fell"
                text = (
                    f"{verb} {fmt.relative(p95.current, p95.previous).lstrip('+' + fmt.MINUS)} to {fmt.ms(p95.current)}"
                )
                found.append(Notable(f"p95 latency of {v.version}", text, rel > 0, abs(rel) * 10))
        add_share(f"error rate of {v.version}", v.error_rate, worse_when_down=False)
    found.sort(key=lambda n: (not n.worse, -n.score, n.what))
    return tuple(found[:top])


# --------------------------------------------------------------------------------------------
# section verdicts


def summary_verdict(data: ReportData, changes: Sequence[Notable]) -> str:
    if not data.versions:
        return f"No predictions were stored for {data.model} this week."
    parts = []
    if data.slos:
        spent = [s.name for s in data.slos if s.budget_remaining <= 0]
        burning = [s for s in data.slos if s.budget_remaining > 0 and (s.week_burn_rate or 0) > 1]
        if spent:
            parts.append(f"{len(spent)} of {len(data.slos)} SLOs have spent their error budget ({_listing(spent)})")
        elif burning:
            worst = max(burning, key=lambda s: s.week_burn_rate or 0)
            parts.append(
                f"all {len(data.slos)} SLOs have budget left, but {worst.name} burned {worst.week_burn_rate:.1f}× its sustainable rate this week"
            )
        else:
            parts.append(f"all {len(data.slos)} SLOs are within their error budget")
    else:
        parts.append("no SLOs are configured for this model")
    if changes:
        top = changes[0]
        parts.append(f"biggest change: {top.what} {top.text}")
    else:
        parts.append("nothing changed significantly since last week")
    return _sentence("; ".join(parts))


def quality_verdict(data: ReportData) -> str:
    overall = data.overall
    name = _primary_name(data)
    if overall.current is None or overall.n == 0:
        return "No labelled predictions this week, so quality cannot be judged; the Actions say what to label."
    text = f"{name} {fmt.pct(overall.current) if data.task == 'classification' else fmt.decimal(overall.current)} over {fmt.num(overall.n)} labelled {'predictions' if data.task == 'classification' else 'images'}"
    delta = overall.delta
    if delta is not None:
        change = fmt.points(delta) if data.task == "classification" else fmt.signed_decimal(delta)
        text += f", {change} vs last week" + (
            "" if significant_primary_change(overall, data.task) else " (within noise)"
        )
    fell = [c for c in data.classes if (c.recall.delta or 0) < 0 and significant_share_change(c.recall)]
    if fell:
        text += f"; recall fell significantly for {len(fell)} class{'es' if len(fell) > 1 else ''}"
    dropped = [r for r in data.cohorts if cohort_dropped(r, data.task)]
    if dropped:
        worst = min(dropped, key=lambda r: r.primary.delta or 0.0)
        text += f"; worst cohort: {cohort_name(worst, data)}"
    return _sentence(text)


def calibration_verdict(data: ReportData) -> str:
    version = busiest(data)
    if version is None or version.calibration.current is None:
        return "No labelled predictions with confidences this week, so calibration cannot be judged."
    ece = version.calibration.current
    metric = data.calibration_metric
    where = f" ({version.version})" if len(data.versions) > 1 else ""
    if ece <= ECE_TARGET:
        return f"{metric} {fmt.decimal(ece)}{where}: confidences match the observed accuracy (target below {ECE_TARGET:g})."
    gap = overconfidence(data, version.version)
    how = ""
    if gap is not None and abs(gap) >= 0.01:
        how = (
            f": the model is {'over' if gap > 0 else 'under'}confident by {fmt.points(abs(gap)).lstrip('+')} on average"
        )
    return f"{metric} {fmt.decimal(ece)}{where} is above the {ECE_TARGET:g} target{how}; do not trust confidence thresholds until it is recalibrated."


def drift_verdict(data: ReportData) -> str:
    if not data.drift and not any(r.drift for r in data.cohorts):
        return "No drift results for this week: drift detection has not run for this model (or has no reference yet)."
    flagged = [d for d in data.drift if d.drifted]
    detectors = {d.label for d in data.drift}
    cohorts = [r for r in rank_cohorts(data) if r.drifted]
    if not flagged and not cohorts:
        windows = sum(len(d.points) for d in data.drift)
        isolated = sum(len(d.flagged) for d in data.drift) + sum(h.windows for r in data.cohorts for h in r.drift)
        if isolated:
            return (f"No persistent drift this week: {fmt.num(isolated)} isolated flag{'s' if isolated != 1 else ''} in "
                    f"{fmt.num(windows)} scored windows, no more than chance gives at the detectors' false-alarm rate.")  # fmt: skip
        return f"No detector flagged drift this week ({len(detectors)} detector{'s' if len(detectors) != 1 else ''}, {fmt.num(windows)} scored windows)."
    text = ""
    if flagged:
        first = sorted(
            flagged, key=lambda d: (d.flagged[0], _FEATURE_ORDER.get(d.feature, len(_FEATURE_ORDER)), d.label)
        )
        names = _listing([f"{d.label} from {fmt.when(d.flagged[0])}" for d in first], limit=3)
        text = f"Drift flagged by {len({d.label for d in flagged})} of {len(detectors)} detectors ({names})"
    if cohorts:
        lead = cohorts[0]
        text += ("; " if text else "Drift flagged on ") + f"most affected cohort: {cohort_name(lead, data)}"
    return _sentence(text)


def service_verdict(data: ReportData) -> str:
    version = busiest(data)
    if version is None:
        return "No predictions this week."
    p95, errors = version.latency_p95_ms, version.error_rate
    where = f" on {version.version}" if len(data.versions) > 1 else ""
    text = f"Latency p95 {fmt.ms(p95.current)}"
    if p95.previous:
        text += f" ({fmt.relative(p95.current, p95.previous)} vs last week)"
    text += f", error rate {fmt.pct(errors.current, 2)}"
    if version.cost_per_1k.current is not None:
        text += f", {fmt.money(version.cost_per_1k.current, data.currency)} per 1{fmt.NNBSP}000 inferences"
    text += f" over {fmt.num(version.predictions.current)} predictions{where}"
    if errors.current is not None and errors.current > ERROR_RATE_TARGET:
        text += f"; the error rate is above the {ERROR_RATE_TARGET:.0%} target"
    return _sentence(text)


def labels_verdict(data: ReportData) -> str:
    """How far annotators agree this week, and where they agree least."""
    q = data.labels
    if q is None or not q.items.current:
        return "" if q is None else "No prediction had two or more annotators this week; label agreement is unmeasured."
    text = (
        f"Annotators agreed on {fmt.pct(q.agreement.current)} of label pairs over {fmt.num(q.items.current)} "
        f"predictions with two or more annotators (Krippendorff's alpha {fmt.decimal(q.alpha.current, 2)}"
    )
    if q.alpha.previous is not None:
        text += f", {fmt.decimal(q.alpha.previous, 2)} last week"
    text += f"); {fmt.num(q.disputed_items)} were disputed"
    if q.most_disputed:
        worst = q.most_disputed[0]
        text += f", most often over {worst.name!r} ({fmt.pct(worst.specific_agreement)} of its labels agreed)"
    return _sentence(text)


def actions_verdict(actions: Sequence[Action]) -> str:
    if not actions:
        return "Nothing needs action this week."
    now = sum(a.urgency == "now" for a in actions)
    text = f"{len(actions)} action{'s' if len(actions) != 1 else ''}"
    return text + (f", {now} to do now." if now else ", none urgent.")


# --------------------------------------------------------------------------------------------
# actions


def build_actions(data: ReportData) -> tuple[Action, ...]:
    """What to do about the week, most urgent first (stable within an urgency)."""
    actions: list[Action] = []
    actions += _slo_actions(data.slos)
    actions += _cohort_actions(data)
    actions += _version_drift_actions(data)
    actions += _class_actions(data)
    actions += _label_actions(data)
    actions += _agreement_actions(data)
    actions += _calibration_actions(data)
    actions += _service_actions(data)
    order = {u: i for i, u in enumerate(URGENCIES)}
    return tuple(sorted(actions, key=lambda a: order[a.urgency]))


def _slo_actions(slos: Sequence[SloStatus]) -> list[Action]:
    out = []
    for s in slos:
        paged = "page" in s.firing
        if s.budget_remaining <= 0 or paged:
            state = "its error budget is spent" if s.budget_remaining <= 0 else "a burn-rate page is firing"
            out.append(
                Action(
                    "now",
                    f"SLO {s.name}: {state} ({fmt.pct(s.budget_remaining, 0)} of the {s.window} budget left) — "
                    "stop risky rollouts, find the cause in the sections below, and roll back if a new version caused it.",
                )
            )
        elif (s.week_burn_rate or 0) > 1 or s.firing:
            out.append(
                Action(
                    "this week",
                    f"SLO {s.name} burned its budget {s.week_burn_rate or 0:.1f}× faster than it accrues this week "
                    f"({fmt.pct(s.budget_remaining, 0)} left) — find the cause before it runs out.",
                )
            )
    return out


def _drift_words(hits: Sequence[DriftHit]) -> str:
    """``drift detected on its embeddings since Tue 14:00``."""
    first = min(hits, key=lambda h: h.first)
    features: list[str] = []
    # what the camera sees first: embeddings and confidences say more than the class mix
    for h in sorted(hits, key=lambda h: (_FEATURE_ORDER.get(h.feature, len(_FEATURE_ORDER)), h.first, h.feature)):
        words = feature_words(h.feature)
        if words not in features:
            features.append(words)
    return f"drift detected on its {_listing(features, limit=3)} since {fmt.when(first.first)}"


def _check(row: CohortRow) -> str:
    if row.key.lower() in ("camera", "cam", "camera_id", "device", "sensor"):
        return "check the camera (position, focus, exposure, firmware) and that its frames arrive intact"
    return f"check what changed for {row.key} {row.value} (input pipeline, corrupted or re-encoded inputs)"


def _cohort_actions(data: ReportData) -> list[Action]:
    out = []
    for row in rank_cohorts(data):
        dropped = cohort_dropped(row, data.task)
        below = cohort_below(row, data)
        if not dropped and not below and not row.drifted:
            continue
        name = cohort_name(row, data)
        value = row.primary
        label = labels_to_measure(value.current if data.task == "classification" else None)
        images = f"label {fmt.num(label)} recent {row.value} images"
        if dropped:
            amount = (
                fmt.points(abs(value.delta or 0)).lstrip("+")
                if data.task == "classification"
                else fmt.decimal(abs(value.delta or 0))
            )
            text = f"{_primary_name(data)} fell {amount} on {name} (n={fmt.num(value.n)})"
            if row.drifted:
                text += f"; {_drift_words(row.drifted)}"
            text += f" — {_check(row)}, then {images}."
            urgent = (value.delta or 0) <= -URGENT_DROP
            out.append(Action("now" if urgent else "this week", text))
        elif below:
            gap = cohort_gap(row, data)
            level = fmt.pct if data.task == "classification" else fmt.decimal
            amount = (
                fmt.points(abs(gap.delta or 0)).lstrip("+")
                if data.task == "classification"
                else fmt.decimal(abs(gap.delta or 0))
            )
            text = (f"{_primary_name(data)} on {name} is {amount} below {row.version} as a whole ({level(gap.current)} vs "
                    f"{level(gap.previous)}, n={fmt.num(value.n)})")  # fmt: skip
            if row.drifted:
                text += f"; {_drift_words(row.drifted)}"
            out.append(Action("this week", text + f" — {_check(row)}, then {images}."))
        elif value.n < MIN_LABELS:
            text = (
                f"{name[:1].upper()}{name[1:]}: {_drift_words(row.drifted)}, and its {_primary_name(data).lower()} cannot be judged yet "
                f"(n={fmt.num(value.n)}) — {images} to see whether the drift matters."
            )
            out.append(Action("this week", text))
        else:
            held = fmt.pct(value.current) if data.task == "classification" else fmt.decimal(value.current)
            text = (
                f"{name[:1].upper()}{name[1:]}: {_drift_words(row.drifted)}, but its {_primary_name(data).lower()} held ({held}, n={fmt.num(value.n)}) "
                "— keep watching; retrain on recent data only if quality follows."
            )
            out.append(Action("when convenient", text))
    return out


def _version_drift_actions(data: ReportData) -> list[Action]:
    """Drift on a version's whole traffic, when no cohort explains it."""
    if any(r.drifted for r in data.cohorts):
        return []
    out = []
    by_version: dict[str, list[DriftTrend]] = {}
    for d in data.drift:
        if d.drifted:
            by_version.setdefault(d.version, []).append(d)
    for version, trends in by_version.items():
        hits = [DriftHit(d.detector, d.feature, d.flagged[0], len(d.flagged), len(d.points)) for d in trends]
        if all(h.feature in ("class_mix", "classes") for h in hits):
            out.append(
                Action(
                    "when convenient",
                    f"The class mix of {version} changed ({_listing([d.label for d in trends])} from "
                    f"{fmt.when(min(h.first for h in hits))}) — confirm with the product owner whether the change "
                    "is real (a season, a new product) before retraining.",
                )
            )
            continue
        summary = next((v for v in data.versions if v.version == version), None)
        accuracy = summary.primary.current if summary else None
        label = labels_to_measure(accuracy if data.task == "classification" else None)
        out.append(
            Action(
                "this week",
                f"Version {version}: {_drift_words(hits)} ({_listing([d.label for d in trends], limit=3)}) — "
                f"find the cohort it comes from in the cohort table, label {fmt.num(label)} recent images, and "
                "retrain on recent data if quality follows.",
            )
        )
    return out


def _class_actions(data: ReportData) -> list[Action]:
    out = []
    recall = sorted(
        (c for c in data.classes if (c.recall.delta or 0) < 0 and significant_share_change(c.recall)),
        key=lambda c: c.recall.delta or 0,
    )
    precision = sorted(
        (c for c in data.classes if (c.precision.delta or 0) < 0 and significant_share_change(c.precision)),
        key=lambda c: c.precision.delta or 0,
    )
    if recall:
        names = _listing(
            [f"{c.name!r} ({fmt.points(c.recall.delta)}, n={fmt.num(c.recall.n)})" for c in recall], limit=3
        )
        out.append(
            Action(
                "this week",
                f"Recall fell for {names} — the model misses more of {'it' if len(recall) == 1 else 'them'}: "
                "add targeted labelled examples of these classes from recent traffic.",
            )
        )
    if precision:
        names = _listing(
            [f"{c.name!r} ({fmt.points(c.precision.delta)}, n={fmt.num(c.precision.n)})" for c in precision], limit=3
        )
        out.append(
            Action(
                "this week",
                f"Precision fell for {names} — more false positives: review the operating threshold and "
                "look for noisy or ambiguous labels.",
            )
        )
    return out


def _label_actions(data: ReportData) -> list[Action]:
    """Where labelling effort goes: classes and cohorts with too few labels to judge."""
    out = []
    few = [c for c in data.classes if c.recall.n < MIN_LABELS and (c.recall.n + c.precision.n) > 0]
    unseen = [c for c in data.classes if c.recall.n == 0 and c.precision.n == 0]
    if few and data.versions:
        few.sort(key=lambda c: (c.recall.n, c.name))
        missing = sum(MIN_LABELS - c.recall.n for c in few)
        names = _listing([f"{c.name!r} ({c.recall.n})" for c in few], limit=6)
        text = (
            f"Too few labels to judge {len(few)} class{'es' if len(few) != 1 else ''} (under {MIN_LABELS} this week): "
            f"label about {fmt.num(missing)} more images, starting with {names}."
        )
        if unseen:
            text += f" {len(unseen)} more class{'es' if len(unseen) != 1 else ''} had no labelled sample at all."
        out.append(Action("this week", text))
    for row in rank_cohorts(data):
        if row.drifted or row.primary.n >= MIN_LABELS or row.predictions < 2 * MIN_LABELS:
            continue  # drifted cohorts have their own action; a quiet cohort is not worth labelling for
        out.append(
            Action(
                "when convenient",
                f"Only {fmt.num(row.primary.n)} labels for {fmt.num(row.predictions)} predictions on "
                f"{cohort_name(row, data)} — label {fmt.num(labels_to_measure(None))} recent {row.value} images "
                "so its quality can be judged.",
            )
        )
    return out


def _agreement_actions(data: ReportData) -> list[Action]:
    """Labels annotators do not agree on judge a model on noise: fix the labelling first."""
    q = data.labels
    if q is None or q.alpha.current is None or q.alpha.n < MIN_LABELS or q.alpha.current >= ALPHA_TENTATIVE:
        return []
    names = _listing([f"{d.name!r}" for d in q.most_disputed], limit=3)
    where = f", above all on {names}" if names else ""
    return [
        Action(
            "this week",
            f"Annotators agree little (Krippendorff's alpha {fmt.decimal(q.alpha.current, 2)} over "
            f"{fmt.num(q.alpha.n)} multiply-annotated predictions, below {ALPHA_TENTATIVE}){where} — review the "
            "labelling guidelines and audit a sample before trusting the quality metrics of those classes.",
        )
    ]


def _calibration_actions(data: ReportData) -> list[Action]:
    out = []
    for v in data.versions:
        ece = v.calibration
        if ece.current is not None and ece.current > ECE_TARGET and ece.n >= MIN_LABELS:
            out.append(
                Action(
                    "when convenient",
                    f"{data.calibration_metric} of {v.version} is {fmt.decimal(ece.current)} (target below "
                    f"{ECE_TARGET:g}) — recalibrate its probabilities on recent labelled data (temperature "
                    "scaling) before relying on confidence thresholds or the label-free estimate.",
                )
            )
        est, acc = v.estimated, v.primary
        if (
            est.current is not None
            and acc.current is not None
            and acc.n >= MIN_LABELS
            and abs(est.current - acc.current) >= ESTIMATE_GAP
        ):
            out.append(
                Action(
                    "when convenient",
                    f"The label-free estimate of {v.version} ({fmt.pct(est.current)}) is "
                    f"{fmt.points(abs(est.current - acc.current)).lstrip('+')} off realised accuracy "
                    f"({fmt.pct(acc.current)}) — trust labels over the estimate until its reference is refitted.",
                )
            )
    return out


def _service_actions(data: ReportData) -> list[Action]:
    out = []
    for v in data.versions:
        p95 = v.latency_p95_ms
        if (
            p95.current
            and p95.previous
            and p95.n >= 100
            and p95.previous_n >= 100
            and p95.current / p95.previous - 1 >= LATENCY_CHANGE
        ):
            out.append(
                Action(
                    "this week",
                    f"p95 latency of {v.version} rose {fmt.relative(p95.current, p95.previous).lstrip('+')} to "
                    f"{fmt.ms(p95.current)} — check accelerator saturation and batch sizes; scale out if load grew.",
                )
            )
        errors = v.error_rate
        if errors.current is not None and errors.current > ERROR_RATE_TARGET and errors.n >= 100:
            urgency: Urgency = "now" if errors.current > 5 * ERROR_RATE_TARGET else "this week"
            out.append(
                Action(
                    urgency,
                    f"Error rate of {v.version} is {fmt.pct(errors.current, 2)} (target below {ERROR_RATE_TARGET:.0%}) — "
                    "check input validation (codec or camera firmware changes) and pod restarts or evictions.",
                )
            )
    return out


# --------------------------------------------------------------------------------------------


def _listing(items: Sequence[str], limit: int = 4) -> str:
    """``a, b and c``; beyond ``limit`` items, ``a, b, c and 4 more``."""
    items = list(items)
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + f" and {items[-1]}"


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."
