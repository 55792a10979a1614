"""The label-free accuracy estimate of a week, per slice, from the stored estimate points.

The drift job stores ``estimated_accuracy`` per completed window it scores (1h and 1d by default)
and every version and cohort slice: the points ``GET /v1/models/{model}/metrics`` serves. A week's
estimate is the mean of its windows' estimates weighted by their samples (each is a mean over
the predictions it scored), taken over one window length: the one whose windows of the week hold
the most samples, the longer one on a tie. A full week of modest traffic gets its days; a day
still in progress, its completed hours; a busy week, its hours (a scored window holds at most
``drift_max_samples`` predictions, so hours hold more of the traffic than days).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from monitor.server.reports.data import EMPTY, WeekValue

#: (version, cohort key, cohort value); ("v1", "", "") is the whole version
SliceKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class EstimatePoint:
    """One stored ``estimated_accuracy`` point of one window length."""

    window_seconds: int
    window_start: datetime
    version: str
    cohort_key: str
    cohort_value: str
    value: float | None
    sample_count: int


def week_estimates(
    points: Iterable[EstimatePoint], week_start: datetime, previous_start: datetime
) -> dict[SliceKey, WeekValue]:
    """Per slice: this week's estimate (``current``, its samples ``n``) next to last week's.
    Points of windows starting before ``previous_start`` or after the week are not passed in."""
    # (slice, week start, window length) -> [weighted sum, samples]
    sums: dict[tuple[SliceKey, datetime, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for p in points:
        if p.value is None or p.sample_count <= 0:
            continue
        week = week_start if p.window_start >= week_start else previous_start
        acc = sums[((p.version, p.cohort_key, p.cohort_value), week, p.window_seconds)]
        acc[0] += p.value * p.sample_count
        acc[1] += p.sample_count
    best: dict[tuple[SliceKey, datetime], tuple[float, int, float]] = {}
    for (key, week, seconds), (weighted, samples) in sums.items():
        candidate = (samples, seconds, weighted / samples)
        if (key, week) not in best or candidate[:2] > best[(key, week)][:2]:
            best[(key, week)] = candidate
    out: dict[SliceKey, WeekValue] = {}
    for key in {k for k, _ in best}:
        now, before = best.get((key, week_start)), best.get((key, previous_start))
        out[key] = WeekValue(
            current=now[2] if now else None,
            previous=before[2] if before else None,
            n=int(now[0]) if now else 0,
            previous_n=int(before[0]) if before else 0,
        )
    return out


def estimate_of(estimates: dict[SliceKey, WeekValue], key: SliceKey) -> WeekValue:
    return estimates.get(key, EMPTY)
