"""Pure views of the report data: orderings, derived tables, and when a change is significant.

A change counts only with enough samples on both sides (:data:`MIN_LABELS`, the same 30 the SLO
time slices need) and, for shares such as accuracy or recall, a two-proportion z-test beyond
:data:`Z_SIGNIFICANT`. Three standard errors rather than two: a 100-class model has 200 per-class
comparisons a week, and at two standard errors about ten of them would "change" by chance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from monitor.server.reports.data import ClassRow, CohortRow, Confusion, ReportData, VersionSummary, WeekValue

#: Labelled samples a share needs before the report judges it (as SLO time slices do).
MIN_LABELS: Final = 30
#: Standard errors a change of a share must exceed to be reported.
Z_SIGNIFICANT: Final = 3.0
#: Smallest change of a share worth a line, however many samples (two percentage points).
MIN_SHARE_CHANGE: Final = 0.02
#: Smallest change of mAP worth a line (detection: no z-test for mAP).
MIN_MAP_CHANGE: Final = 0.03


def proportion_z(value: WeekValue) -> float | None:
    """The two-proportion z statistic of this week against last week, or None with too few samples."""
    if value.current is None or value.previous is None or value.n < MIN_LABELS or value.previous_n < MIN_LABELS:
        return None
    pooled = (value.current * value.n + value.previous * value.previous_n) / (value.n + value.previous_n)
    se = math.sqrt(max(pooled * (1 - pooled), 0.0) * (1 / value.n + 1 / value.previous_n))
    delta = value.current - value.previous
    if se == 0:
        return 0.0 if delta == 0 else math.copysign(math.inf, delta)
    return delta / se


def significant_share_change(value: WeekValue) -> bool:
    """Whether a share (accuracy, recall, ...) moved by more than chance and by at least 2 points."""
    z = proportion_z(value)
    delta = value.delta
    return z is not None and delta is not None and abs(z) >= Z_SIGNIFICANT and abs(delta) >= MIN_SHARE_CHANGE


def significant_primary_change(value: WeekValue, task: str) -> bool:
    """Accuracy: the z-test; mAP (no per-sample variance stored): at least 3 points on 30+ images."""
    if task == "classification":
        return significant_share_change(value)
    delta = value.delta
    return (
        delta is not None and value.n >= MIN_LABELS and value.previous_n >= MIN_LABELS and abs(delta) >= MIN_MAP_CHANGE
    )


#: Smallest change of a score (ECE, a drift score) worth colouring.
MIN_SCORE_CHANGE: Final = 0.02
#: Smallest relative change of a latency worth colouring, and the samples it needs.
MIN_LATENCY_CHANGE: Final = 0.20
MIN_LATENCY_SAMPLES: Final = 100


def notable(value: WeekValue, kind: str) -> bool:
    """Whether a change is worth colouring in a table: ``share`` (z-test), ``score`` (at least
    0.02 on 30+ samples each week) or ``ms`` (at least 20 % on 100+ samples each week)."""
    delta = value.delta
    if delta is None:
        return False
    if kind == "share":
        return significant_share_change(value)
    if kind == "ms":
        enough = value.n >= MIN_LATENCY_SAMPLES and value.previous_n >= MIN_LATENCY_SAMPLES
        return enough and bool(value.previous) and abs(delta / value.previous) >= MIN_LATENCY_CHANGE  # type: ignore[operator]
    return value.n >= MIN_LABELS and value.previous_n >= MIN_LABELS and abs(delta) >= MIN_SCORE_CHANGE


def cohort_dropped(row: CohortRow, task: str) -> bool:
    """Significantly worse than last week."""
    delta = row.primary.delta
    return delta is not None and delta < 0 and significant_primary_change(row.primary, task)


#: A cohort this far below its version as a whole needs attention even without a change since
#: last week (a camera added this week, a version rolled out this week).
MIN_COHORT_GAP: Final = 0.05


def cohort_gap(row: CohortRow, data: ReportData) -> WeekValue:
    """The cohort this week (``current``) next to its whole version this week (``previous``)."""
    version = next((v for v in data.versions if v.version == row.version), None)
    if version is None:
        return WeekValue(row.primary.current, None, row.primary.n, 0)
    return WeekValue(row.primary.current, version.primary.current, row.primary.n, version.primary.n)


def cohort_below(row: CohortRow, data: ReportData) -> bool:
    """Significantly and at least 5 points (0.05 mAP) below its version as a whole this week."""
    gap = cohort_gap(row, data)
    delta = gap.delta
    return delta is not None and delta <= -MIN_COHORT_GAP and significant_primary_change(gap, data.task)


def rank_cohorts(data: ReportData) -> tuple[CohortRow, ...]:
    """Cohorts most in need of attention first: drifted, significantly worse than last week or
    than their version as a whole; then by the size of the fall, then by traffic."""

    def key(row: CohortRow) -> tuple[int, float, int, str, str]:
        below = cohort_below(row, data)
        concern = bool(row.drifted) or cohort_dropped(row, data.task) or below
        fall = min(row.primary.delta or 0.0, (cohort_gap(row, data).delta or 0.0) if below else 0.0)
        return (
            0 if concern else 1,
            fall,
            -row.predictions,
            row.key,
            row.value,
        )

    return tuple(sorted(data.cohorts, key=key))


def classes_by_change(data: ReportData) -> tuple[ClassRow, ...]:
    """Per-class rows, the largest change of recall (AP for detection) first; classes without a
    comparison after those, by support."""

    def change(row: ClassRow) -> WeekValue:
        return row.ap if row.ap is not None and data.task == "detection" else row.recall

    def key(row: ClassRow) -> tuple[int, float, int, str]:
        delta = change(row).delta
        return (0 if delta is not None else 1, -abs(delta) if delta is not None else 0.0, -row.recall.n, row.name)

    return tuple(sorted(data.classes, key=key))


@dataclass(frozen=True, slots=True)
class MixRow:
    """A class's share of the labelled traffic: as predicted and as labelled, both weeks."""

    name: str
    predicted: WeekValue
    actual: WeekValue


#: A class's share of the traffic must move this much (half a point) to be listed.
MIN_MIX_CHANGE: Final = 0.005


def class_mix(data: ReportData, top: int = 10, min_change: float = MIN_MIX_CHANGE) -> tuple[MixRow, ...]:
    """The ``top`` classes whose share of predictions (or of labels) moved most since last week,
    at least ``min_change``; empty when the mix held."""
    pred_now = sum(r.precision.n for r in data.classes)
    pred_before = sum(r.precision.previous_n for r in data.classes)
    true_now = sum(r.recall.n for r in data.classes)
    true_before = sum(r.recall.previous_n for r in data.classes)
    if not (pred_now and pred_before):
        return ()

    def share(count: int, total: int) -> float | None:
        return count / total if total else None

    rows = [
        MixRow(
            r.name,
            WeekValue(
                share(r.precision.n, pred_now),
                share(r.precision.previous_n, pred_before),
                r.precision.n,
                r.precision.previous_n,
            ),
            WeekValue(
                share(r.recall.n, true_now), share(r.recall.previous_n, true_before), r.recall.n, r.recall.previous_n
            ),
        )
        for r in data.classes
    ]

    def moved(m: MixRow) -> float:
        return max(abs(m.predicted.delta or 0.0), abs(m.actual.delta or 0.0))

    rows = [m for m in rows if moved(m) >= min_change]
    rows.sort(key=lambda m: (-moved(m), m.name))
    return tuple(rows[:top])


@dataclass(frozen=True, slots=True)
class ConfusedPair:
    true: str
    predicted: str
    count: int
    #: share of the true class's samples predicted as ``predicted``
    share: float


def confused_pairs(confusion: Confusion | None, top: int = 10) -> tuple[ConfusedPair, ...]:
    """The largest off-diagonal cells of the week's confusion matrix."""
    if confusion is None:
        return ()
    cells = []
    for i, row in enumerate(confusion.counts):
        total = sum(row)
        for j, count in enumerate(row):
            if i != j and count > 0:
                cells.append(ConfusedPair(confusion.classes[i], confusion.classes[j], count, count / total))
    cells.sort(key=lambda c: (-c.count, -c.share, c.true, c.predicted))
    return tuple(cells[:top])


def busiest(data: ReportData) -> VersionSummary | None:
    """The version with the most predictions this week (versions are stored busiest first)."""
    return data.versions[0] if data.versions else None


def overconfidence(data: ReportData, version: str) -> float | None:
    """Mean confidence minus accuracy over the week's reliability bins (> 0: overconfident)."""
    for curve in data.reliability:
        if curve.version == version:
            total = sum(b.count for b in curve.bins if b.confidence is not None and b.accuracy is not None)
            if not total:
                return None
            return (
                sum(
                    b.count * (b.confidence - b.accuracy)
                    for b in curve.bins
                    if b.confidence is not None and b.accuracy is not None
                )
                / total
            )
    return None
