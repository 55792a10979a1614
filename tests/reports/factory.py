"""Hand-built report data for the pure tests (no database): a week of a classifier with a
drifting camera, a regressing class, SLOs and drift results, sized by the number of classes."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from monitor.server.reports.data import (
    ClassRow,
    CohortRow,
    Confusion,
    DisputedClass,
    DriftHit,
    DriftTrend,
    LabelQuality,
    ReliabilityBin,
    ReliabilityCurve,
    ReportData,
    Series,
    SloStatus,
    VersionSummary,
    WeekValue,
)

WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)  # Monday of 2026-W47
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def days(values: list[float | None]) -> tuple[tuple[datetime, float | None], ...]:
    """Daily points over the two weeks ending with the report's week."""
    return tuple((WEEK_START - 7 * DAY + i * DAY, v) for i, v in enumerate(values))


def slo(
    name: str = "digits-accuracy", remaining: float = 0.62, week_events: float = 5000, week_bad: float = 120, **kw: Any
) -> SloStatus:
    return SloStatus(
        name=name,
        sli="accuracy",
        objective=0.95,
        window="30d",
        scope="",
        threshold=None,
        budget_remaining=remaining,
        window_events=20000,
        window_bad=380,
        week_events=week_events,
        week_bad=week_bad,
        firing=(),
        **kw,
    )


def version(name: str = "mlp-v1", **changes: Any) -> VersionSummary:
    base = VersionSummary(
        version=name,
        first_seen=WEEK_START - 30 * DAY,
        predictions=WeekValue(12_000, 11_800, 12_000, 11_800),
        label_coverage=WeekValue(0.6, 0.61, 12_000, 11_800),
        primary=WeekValue(0.91, 0.95, 7_200, 7_100),
        calibration=WeekValue(0.031, 0.024, 7_200, 7_100),
        estimated=WeekValue(0.92, 0.95, 12_000, 11_800),
        latency_p50_ms=WeekValue(8.0, 7.9, 12_000, 11_800),
        latency_p95_ms=WeekValue(21.0, 20.0, 12_000, 11_800),
        latency_p99_ms=WeekValue(35.0, 33.0, 12_000, 11_800),
        error_rate=WeekValue(0.001, 0.001, 12_000, 11_800),
        label_latency_p50_s=WeekValue(2700.0, 2650.0, 7_200, 7_100),
        cost_per_1k=WeekValue(0.0508, 0.049, 12_000, 11_800),
    )
    return replace(base, **changes)


def label_quality(alpha: float = 0.74, items: int = 600, **changes: Any) -> LabelQuality:
    """A week in which annotators mostly agree, least on two classes."""
    base = LabelQuality(
        items=WeekValue(float(items), 540.0),
        single=6_600,
        agreement=WeekValue(0.88, 0.9, items, 540),
        alpha=WeekValue(alpha, 0.78, items, 540),
        disputed_items=96,
        most_disputed=(DisputedClass("class-004", 210, 0.61, 41), DisputedClass("class-007", 180, 0.72, 30)),
    )
    return replace(base, **changes)


def cohort(
    value: str, acc: float, prev: float, n: int = 1240, drift: tuple[DriftHit, ...] = (), key: str = "camera", **kw: Any
) -> CohortRow:
    return CohortRow(
        key=key,
        value=value,
        version=kw.pop("version_name", "mlp-v1"),
        predictions=kw.pop("predictions", 3000),
        label_coverage=0.6,
        primary=WeekValue(acc, prev, n, n),
        estimated=kw.pop("estimated", acc + 0.01),
        trend=tuple([prev] * 7 + [acc] * 7),
        drift=drift,
        **kw,
    )


def classes(n: int, rng: np.random.Generator, names: list[str] | None = None) -> tuple[tuple[ClassRow, ...], Confusion]:
    names = names or [f"class-{i:03d}" for i in range(n)]
    support = rng.integers(40, 120, size=n)
    support[-3:] = [5, 2, 0]  # classes with too few labels to judge
    matrix = np.zeros((n, n), dtype=np.int64)
    for i, s in enumerate(support):
        correct = int(s * (0.6 if i == 1 else 0.9))
        matrix[i, i] = correct
        if s - correct:
            np.add.at(matrix[i], rng.integers(0, n, size=s - correct), 1)
    predicted = matrix.sum(axis=0)
    rows = []
    for i, name in enumerate(names):
        recall = matrix[i, i] / support[i] if support[i] else None
        precision = matrix[i, i] / predicted[i] if predicted[i] else None
        prev_recall = 0.92 if recall is not None else None
        rows.append(
            ClassRow(
                name,
                WeekValue(precision, precision, int(predicted[i]), int(predicted[i])),
                WeekValue(recall, prev_recall, int(support[i]), int(support[i])),
            )
        )
    return tuple(rows), Confusion(tuple(names), tuple(tuple(int(x) for x in row) for row in matrix))


def reliability(version_name: str = "mlp-v1") -> ReliabilityCurve:
    bins = []
    for k in range(15):
        lo = k / 15
        conf = lo + 1 / 30
        bins.append(ReliabilityBin(lo, lo + 1 / 15, 10 + 30 * k, conf, max(0.0, conf - 0.04)))
    return ReliabilityCurve(version_name, tuple(bins), 0.031, sum(b.count for b in bins))


def drift_trend(flag_from: int | None = 38, label: str = "mmd:embedding") -> DriftTrend:
    detector, feature = label.split(":")
    points = tuple(
        (WEEK_START + h * HOUR, 0.02 + (0.3 if flag_from is not None and h >= flag_from else 0.0))
        for h in range(0, 168, 2)
    )
    flagged = tuple(ts for ts, v in points if v > 0.2)
    return DriftTrend(detector, feature, "mlp-v1", points, 0.2, flagged, 0.001 if flagged else 0.4)


def report(n_classes: int = 10, *, names: list[str] | None = None, seed: int = 0, **changes: Any) -> ReportData:
    rng = np.random.default_rng(seed)
    rows, confusion = classes(n_classes, rng, names)
    hit = DriftHit("mmd", "embedding", WEEK_START + DAY + 14 * HOUR, 40, 168)
    data = ReportData(
        model="digits",
        task="classification",
        week="2026-W47",
        period_start=WEEK_START,
        period_end=WEEK_START + 7 * DAY,
        generated_at=WEEK_START + 7 * DAY + 6 * HOUR,
        trend_window="1d",
        n_classes=n_classes,
        overall=WeekValue(0.91, 0.95, 7_200, 7_100),
        overall_label_coverage=WeekValue(0.6, 0.61, 12_000, 11_800),
        versions=(version(),),
        slos=(slo(), slo("digits-latency", remaining=-0.1, week_bad=400)),
        slo_as_of=WEEK_START + 7 * DAY + 6 * HOUR,
        quality_trend=(Series("mlp-v1", days([0.95] * 7 + [0.95, 0.91, 0.89, 0.9, 0.9, 0.89, None])),),
        coverage_trend=(Series("mlp-v1", days([0.6] * 14)),),
        calibration_trend=(Series("mlp-v1", days([0.02] * 7 + [0.03] * 7)),),
        reliability=(reliability(),),
        classes=rows,
        confusion=confusion,
        cohorts=(cohort("cam-1", 0.95, 0.95), cohort("cam-3", 0.79, 0.95, drift=(hit,)), cohort("cam-2", 0.94, 0.95)),
        drift=(drift_trend(), drift_trend(None, "ks:confidence")),
        drift_window="1h",
        estimate_trend=(
            Series("label-free estimate", days([0.95] * 7 + [0.92] * 7)),
            Series("realised accuracy", days([0.95] * 7 + [0.9] * 7)),
        ),
        latency_trend=(Series("mlp-v1", days([20.0] * 7 + [21.0] * 7)),),
        error_trend=(Series("mlp-v1", days([0.001] * 14)),),
        currency="USD",
        labels=label_quality(),
    )
    return replace(data, **changes)
