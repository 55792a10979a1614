"""``build_report_data``: the report data of one model and ISO week, read from the database.

The only code of the reports that reads (:mod:`.store` keeps the finished reports).

The builder reads what the evaluate, drift and SLO jobs stored and aggregates it for one ISO week
next to the week before; the templates never see the database. What comes from where:

==========================  ====================================================================
week totals per slice       ``metric_points``, the 7d window (7d windows start on Mondays, so a
                            week is exactly one stored window): accuracy / mAP, ECE, latency,
                            error rate, coverage, reliability bins
label-free estimate         ``metric_points`` ``estimated_accuracy`` of the drift job's windows
                            (1h, 1d), weighed by samples (:mod:`.estimates`)
trends                      ``metric_points``, the 1d window, both weeks: one point per day per
                            version, sparklines per cohort; the 1h window when 1d is not
                            configured or has fewer than three windows (a day or two of data)
per-class table, confusion  ``eval_states`` of the whole versions, merged over both weeks and every
                            version (classification: exact counts); detection: the 7d per-class
                            points of the busiest version
cost per 1 000 inferences   ``metric_points``, the 7d window, per version (``cost_per_1k``)
label quality               ``eval_states`` (agreement states) of the whole versions, merged per
                            week over every version: agreement, alpha, most disputed classes
drift                       ``metric_points`` rows ``drift_score`` / ``drift_p_value`` /
                            ``drift_detected`` (+ ``drift_threshold`` when written), class
                            ``<detector>:<feature>``, the shortest
                            window they are stored for
SLOs                        ``slo_events`` through :func:`monitor.server.slo.counts.read_counts`
                            (error budget left as of generation), the week's own counts, and the
                            notifier's firing incidents
==========================  ====================================================================
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import Connection, Engine

from monitor.metrics import AgreementState, ClassificationState, agreement_metrics, classification_metrics
from monitor.server.reports.data import (
    DEFAULT_ALPHA,
    EMPTY,
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
    ReportError,
    Series,
    SloStatus,
    VersionSummary,
    WeekValue,
)
from monitor.server.reports.estimates import EstimatePoint, SliceKey, estimate_of, week_estimates
from monitor.server.services import history, incidents
from monitor.server.services.models import model_info
from monitor.server.services.states import FEATURE_SEPARATOR
from monitor.server.services.weeks import Week
from monitor.server.settings import Settings, parse_window
from monitor.server.slo.burnrate import budget_remaining
from monitor.server.slo.counts import read_counts
from monitor.server.slo.spec import SLO

WEEK_SECONDS: Final = 7 * 86400
#: Metrics read for the week totals of every slice (per-class and reliability rows come on top).
_WEEK_METRICS: Final = (
    "predictions",
    "labelled",
    "label_coverage",
    "error_rate",
    "latency_p50_ms",
    "latency_p95_ms",
    "latency_p99_ms",
    "label_latency_p50_seconds",
    "accuracy",
    "map",
    "ece",
    "dece",
    "estimated_accuracy",
    "cost_per_1k",
)
#: Classes the report lists as the most disputed.
MOST_DISPUTED: Final = 10
_RELIABILITY: Final = ("reliability_accuracy", "reliability_confidence")
_DETECTION_CLASS_METRICS: Final = ("ap", "precision", "recall")
_TREND_METRICS: Final = (
    "accuracy",
    "map",
    "ece",
    "dece",
    "latency_p95_ms",
    "error_rate",
    "label_coverage",
    "estimated_accuracy",
)
DRIFT_METRICS: Final = ("drift_score", "drift_p_value", "drift_detected", "drift_threshold")


# --------------------------------------------------------------------------------------------
# the builder


def build_report_data(
    engine: Engine, model: str, week_start: datetime, *, settings: Settings, clock: Callable[[], datetime]
) -> ReportData:
    """Read and aggregate everything the report of ``model`` for the week starting ``week_start``
    (a Monday 00:00 UTC) shows. Raises :class:`ReportError` for an unknown model."""
    week = Week.containing(week_start)
    if week.start != week_start.astimezone(UTC):
        raise ReportError(f"a report week starts on a Monday at 00:00 UTC, not at {week_start.isoformat()}")
    generated_at = clock()
    week_window = _window_named(settings, WEEK_SECONDS)
    daily, hourly = _window_named(settings, 86400), _window_named(settings, 3600)
    with engine.connect() as conn:
        info = model_info(conn, model)
        if info is None:
            raise ReportError(f"no model {model!r}")
        spec = info.spec
        primary = "accuracy" if spec.task == "classification" else "map"
        calibration = "ece" if spec.task == "classification" else "dece"
        week_rows = _week_rows(conn, model, week_window, week, detection=spec.task == "detection")
        trend_window, trend_rows = _trend(conn, model, daily, hourly, week)
        drift_window, drift_rows = _drift_rows(conn, model, week)
        estimates = _estimates(conn, model, week)
        wholes = (
            (history.whole_model(conn, spec, week.start, week.end),
             history.whole_model(conn, spec, week.previous.start, week.start))
            if spec.task == "classification" else None
        )  # fmt: skip
        slos = [s for s in settings.slos if s.model == model]
        slo_status = _slo_status(conn, model, slos, week, generated_at)
    first_seen = {v.version: v.first_seen for v in info.versions}
    totals = _SliceTotals(week_rows, week)
    versions = _versions(totals, estimates, first_seen, primary, calibration)
    busiest = versions[0].version if versions else None
    trend_days = _trend_starts(week, trend_window)
    alpha = getattr(settings, "drift_alpha", None)
    drift = _drift_trends(drift_rows, slos, alpha)
    labels = None
    if wholes is not None:
        merged = (wholes[0].classification, wholes[1].classification)
        classes, confusion = _classification_classes(spec.classes, *merged)
        overall = _accuracy(*merged)
        labels = _label_quality(spec.classes, wholes[0].agreement, wholes[1].agreement)
    else:
        classes, confusion = _detection_classes(spec.classes, totals, busiest), None
        overall = totals.value(busiest, "", "", primary) if busiest else EMPTY
    return ReportData(
        model=model,
        task=spec.task,
        week=week.name,
        period_start=week.start,
        period_end=week.end,
        generated_at=generated_at,
        trend_window=trend_window,
        n_classes=len(spec.classes),
        overall=overall,
        overall_label_coverage=totals.coverage_over_versions(),
        versions=versions,
        slos=tuple(slo_status),
        slo_as_of=generated_at,
        quality_trend=_version_series(trend_rows, primary, trend_days, versions),
        coverage_trend=_version_series(trend_rows, "label_coverage", trend_days, versions),
        calibration_trend=_version_series(trend_rows, calibration, trend_days, versions),
        reliability=_reliability(totals, versions) if spec.task == "classification" else (),
        classes=classes,
        confusion=confusion,
        cohorts=_cohorts(totals, estimates, trend_rows, trend_days, primary, _cohort_drift(drift_rows, alpha)),
        drift=drift,
        drift_window=drift_window,
        estimate_trend=_estimate_trend(trend_rows, trend_days, busiest) if spec.task == "classification" else (),
        latency_trend=_version_series(trend_rows, "latency_p95_ms", trend_days, versions),
        error_trend=_version_series(trend_rows, "error_rate", trend_days, versions),
        currency=None if settings.costs is None else settings.costs.currency,
        labels=labels,
    )


def _window_named(settings: Settings, seconds: int) -> str | None:
    """The configured evaluation window of ``seconds`` (e.g. "7d" or "1w")."""
    return next((w for w in settings.windows if parse_window(w) == seconds), None)


# --------------------------------------------------------------------------------------------
# metric points


_Row = history.PointRow


def _week_rows(conn: Connection, model: str, window: str | None, week: Week, *, detection: bool) -> list[_Row]:
    if window is None:
        return []
    metrics = [*_WEEK_METRICS, *_RELIABILITY, *(_DETECTION_CLASS_METRICS if detection else ())]
    return history.points(conn, model, window, metrics, starts=[week.previous.start, week.start])


def _trend_rows(conn: Connection, model: str, window: str, week: Week) -> list[_Row]:
    return history.points(conn, model, window, _TREND_METRICS, since=week.previous.start, until=week.end, whole_only=True)


#: Daily windows a trend needs before it is drawn per day rather than per hour.
MIN_TREND_DAYS: Final = 3


def _trend(conn: Connection, model: str, daily: str | None, hourly: str | None, week: Week) -> tuple[str, list[_Row]]:
    """The trend window and its rows: days, or hours when the data holds fewer than
    :data:`MIN_TREND_DAYS` days (six hours of data are six points, not one)."""
    rows = _trend_rows(conn, model, daily, week) if daily else []
    if hourly and len({r.window_start for r in rows}) < MIN_TREND_DAYS:
        hours = _trend_rows(conn, model, hourly, week)
        if len({r.window_start for r in hours}) > len({r.window_start for r in rows}):
            return hourly, hours
    return daily or hourly or "1d", rows


def _drift_rows(conn: Connection, model: str, week: Week) -> tuple[str | None, list[_Row]]:
    """The drift rows of the week in the shortest window the drift job stored them for."""
    windows = history.windows_with(conn, model, "drift_score", week.start, week.end)
    if not windows:
        return None, []
    window = min(windows, key=_window_seconds)
    return window, history.points(conn, model, window, DRIFT_METRICS, since=week.start, until=week.end)


def _window_seconds(name: str) -> int:
    try:
        return parse_window(name)
    except ValueError:
        return 1 << 62


class _SliceTotals:
    """The 7d rows of both weeks, indexed by (week start, version, cohort key, value, metric, class)."""

    def __init__(self, rows: Iterable[_Row], week: Week) -> None:
        self.week = week
        self.rows: dict[tuple[datetime, str, str, str, str, str], _Row] = {
            (r.window_start, r.version, r.cohort_key, r.cohort_value, r.metric, r.cls): r for r in rows
        }
        self.slices: dict[tuple[str, str, str], set[datetime]] = defaultdict(set)
        for start, version, key, value, _, _ in self.rows:
            self.slices[(version, key, value)].add(start)

    def get(self, start: datetime, version: str, key: str, value: str, metric: str, cls: str = "") -> _Row | None:
        return self.rows.get((start, version, key, value, metric, cls))

    def value(self, version: str, key: str, value: str, metric: str, cls: str = "") -> WeekValue:
        now = self.get(self.week.start, version, key, value, metric, cls)
        before = self.get(self.week.previous.start, version, key, value, metric, cls)
        if now is None and before is None:
            return EMPTY
        return WeekValue(
            current=None if now is None else now.value,
            previous=None if before is None else before.value,
            n=0 if now is None else now.sample_count,
            previous_n=0 if before is None else before.sample_count,
        )

    def versions(self) -> list[str]:
        """Versions with traffic this week, busiest first."""
        counts: dict[str, float] = {}
        for (version, key, _), starts in self.slices.items():
            if key == "" and self.week.start in starts:
                row = self.get(self.week.start, version, "", "", "predictions")
                counts[version] = (row.value or 0.0) if row else 0.0
        return sorted(counts, key=lambda v: (-counts[v], v))

    def coverage_over_versions(self) -> WeekValue:
        """Labelled / predictions over every version, each week."""
        sums = []
        for start in (self.week.start, self.week.previous.start):
            predictions = labelled = 0.0
            for (version, key, _), starts in self.slices.items():
                if key == "" and start in starts:
                    p = self.get(start, version, "", "", "predictions")
                    lab = self.get(start, version, "", "", "labelled")
                    predictions += (p.value or 0.0) if p else 0.0
                    labelled += (lab.value or 0.0) if lab else 0.0
            sums.append((labelled / predictions if predictions else None, int(predictions)))
        return WeekValue(sums[0][0], sums[1][0], sums[0][1], sums[1][1])


def _versions(
    totals: _SliceTotals, estimates: dict[SliceKey, WeekValue], first_seen: Mapping[str, datetime], primary: str, calibration: str
) -> tuple[VersionSummary, ...]:
    out = []
    for version in totals.versions():

        def value(metric: str, version: str = version) -> WeekValue:
            return totals.value(version, "", "", metric)

        out.append(
            VersionSummary(
                version=version,
                first_seen=first_seen.get(version),
                predictions=value("predictions"),
                label_coverage=value("label_coverage"),
                primary=value(primary),
                calibration=value(calibration),
                estimated=estimate_of(estimates, (version, "", "")),
                latency_p50_ms=value("latency_p50_ms"),
                latency_p95_ms=value("latency_p95_ms"),
                latency_p99_ms=value("latency_p99_ms"),
                error_rate=value("error_rate"),
                label_latency_p50_s=value("label_latency_p50_seconds"),
                cost_per_1k=value("cost_per_1k"),
            )
        )
    return tuple(out)


def _estimates(conn: Connection, model: str, week: Week) -> dict[SliceKey, WeekValue]:
    """The label-free estimate of both weeks per slice, from the stored points of every window
    length up to a week (:mod:`.estimates`)."""
    points = []
    for window in history.windows_with(conn, model, "estimated_accuracy", week.previous.start, week.end):
        seconds = _window_seconds(window)
        if seconds > WEEK_SECONDS:
            continue
        for r in history.points(conn, model, window, ["estimated_accuracy"], since=week.previous.start, until=week.end, whole_only=True):
            points.append(EstimatePoint(seconds, r.window_start, r.version, r.cohort_key, r.cohort_value, r.value, r.sample_count))
    return week_estimates(points, week.start, week.previous.start)


def _reliability(totals: _SliceTotals, versions: Sequence[VersionSummary]) -> tuple[ReliabilityCurve, ...]:
    curves = []
    for v in versions:
        bins: dict[str, dict[str, _Row]] = defaultdict(dict)
        for (start, version, key, _, metric, cls), row in totals.rows.items():
            if start == totals.week.start and version == v.version and key == "" and metric in _RELIABILITY:
                bins[cls][metric] = row
        lowers = sorted(bins, key=float)
        out = []
        for i, edge in enumerate(lowers):
            acc, conf = bins[edge].get("reliability_accuracy"), bins[edge].get("reliability_confidence")
            lower = float(edge)
            upper = float(lowers[i + 1]) if i + 1 < len(lowers) else max(lower, 1.0)
            count = (acc or conf).sample_count  # type: ignore[union-attr]
            out.append(ReliabilityBin(lower, upper, count, conf.value if conf else None, acc.value if acc else None))
        if out:
            curves.append(ReliabilityCurve(v.version, tuple(out), v.calibration.current, sum(b.count for b in out)))
    return tuple(curves)


def _detection_classes(classes: Sequence[str], totals: _SliceTotals, version: str | None) -> tuple[ClassRow, ...]:
    if version is None:
        return ()
    rows = []
    for name in classes:
        rows.append(
            ClassRow(
                name=name,
                precision=totals.value(version, "", "", "precision", name),
                recall=totals.value(version, "", "", "recall", name),
                ap=totals.value(version, "", "", "ap", name),
            )
        )
    return tuple(rows)


def _trend_starts(week: Week, window: str) -> tuple[datetime, ...]:
    step = timedelta(seconds=_window_seconds(window))
    count = int((week.end - week.previous.start) / step)
    return tuple(week.previous.start + i * step for i in range(count))


def _series_by_slice(rows: Iterable[_Row], metric: str) -> dict[tuple[str, str, str], dict[datetime, float | None]]:
    out: dict[tuple[str, str, str], dict[datetime, float | None]] = defaultdict(dict)
    for r in rows:
        if r.metric == metric:
            out[(r.version, r.cohort_key, r.cohort_value)][r.window_start] = r.value
    return out


def _version_series(
    rows: Sequence[_Row], metric: str, starts: Sequence[datetime], versions: Sequence[VersionSummary]
) -> tuple[Series, ...]:
    by_slice = _series_by_slice(rows, metric)
    out = []
    for v in versions:
        values = by_slice.get((v.version, "", ""))
        if values and any(x is not None for x in values.values()):
            out.append(Series(v.version, tuple((s, values.get(s)) for s in starts)))
    return tuple(out)


def _estimate_trend(rows: Sequence[_Row], starts: Sequence[datetime], version: str | None) -> tuple[Series, ...]:
    if version is None:
        return ()
    estimated = _series_by_slice(rows, "estimated_accuracy").get((version, "", ""), {})
    if not any(v is not None for v in estimated.values()):
        return ()
    realised = _series_by_slice(rows, "accuracy").get((version, "", ""), {})
    return (
        Series("label-free estimate", tuple((s, estimated.get(s)) for s in starts)),
        Series("realised accuracy", tuple((s, realised.get(s)) for s in starts)),
    )


def _cohorts(
    totals: _SliceTotals,
    estimates: dict[SliceKey, WeekValue],
    trend_rows: Sequence[_Row],
    starts: Sequence[datetime],
    primary: str,
    drift: Mapping[tuple[str, str, str], tuple[DriftHit, ...]],
) -> tuple[CohortRow, ...]:
    trend = _series_by_slice(trend_rows, primary)
    out = []
    for (version, key, value), weeks in sorted(totals.slices.items()):
        if key == "" or totals.week.start not in weeks:
            continue
        predictions = totals.get(totals.week.start, version, key, value, "predictions")
        coverage = totals.get(totals.week.start, version, key, value, "label_coverage")
        values = trend.get((version, key, value), {})
        out.append(
            CohortRow(
                key=key,
                value=value,
                version=version,
                predictions=int(predictions.value or 0) if predictions else 0,
                label_coverage=coverage.value if coverage else None,
                primary=totals.value(version, key, value, primary),
                estimated=estimate_of(estimates, (version, key, value)).current,
                trend=tuple(values.get(s) for s in starts),
                drift=drift.get((version, key, value), ()),
            )
        )
    return tuple(out)


# --------------------------------------------------------------------------------------------
# drift


def split_detector(cls: str) -> tuple[str, str]:
    """``"mmd:embedding"`` to ``("mmd", "embedding")``; ``"psi"`` to ``("psi", "")``."""
    detector, _, feature = cls.partition(FEATURE_SEPARATOR)
    return detector, feature


def _drift_trends(rows: Sequence[_Row], slos: Sequence[SLO], alpha: float | None) -> tuple[DriftTrend, ...]:
    grouped: dict[tuple[str, str], dict[str, dict[datetime, _Row]]] = defaultdict(lambda: defaultdict(dict))
    for r in rows:
        if r.cohort_key == "":
            grouped[(r.version, r.cls)][r.metric][r.window_start] = r
    out = []
    for (version, cls), metrics in sorted(grouped.items()):
        detector, feature = split_detector(cls)
        scores = metrics.get("drift_score", {})
        flagged = tuple(sorted(s for s, r in metrics.get("drift_detected", {}).items() if (r.value or 0) >= 0.5))
        thresholds = [r.value for r in metrics.get("drift_threshold", {}).values() if r.value is not None]
        threshold = thresholds[-1] if thresholds else _slo_threshold(slos, detector)
        p_values = [r for _, r in sorted(metrics.get("drift_p_value", {}).items()) if r.value is not None]
        out.append(
            DriftTrend(
                detector=detector,
                feature=feature,
                version=version,
                points=tuple((s, scores[s].value) for s in sorted(scores)),
                threshold=threshold,
                flagged=flagged,
                last_p_value=p_values[-1].value if p_values else None,
                alpha=alpha if p_values else None,
            )
        )
    return tuple(out)


def _slo_threshold(slos: Sequence[SLO], detector: str) -> float | None:
    """The score bound of the model's drift SLO for ``detector`` (or for every detector)."""
    for slo in slos:
        if slo.sli == "drift" and slo.detector in (detector, None) and slo.threshold is not None:
            return slo.threshold
    return None


def _cohort_drift(rows: Sequence[_Row], alpha: float | None) -> dict[tuple[str, str, str], tuple[DriftHit, ...]]:
    """Per cohort slice (and per whole version, key ""), the detectors that flagged it this week,
    with how many windows they scored."""
    scored: dict[tuple[str, str, str], dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    flagged: dict[tuple[str, str, str], dict[str, list[datetime]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.metric == "drift_detected" and r.value is not None:
            key = (r.version, r.cohort_key, r.cohort_value)
            scored[key][r.cls].append(r.window_start)
            if r.value >= 0.5:
                flagged[key][r.cls].append(r.window_start)
    out = {}
    for key, by_cls in flagged.items():
        found = [
            DriftHit(*split_detector(cls), first=min(starts), windows=len(starts), scored=len(scored[key][cls]),
                     alpha=alpha or DEFAULT_ALPHA)
            for cls, starts in by_cls.items()
        ]  # fmt: skip
        out[key] = tuple(sorted(found, key=lambda h: (h.first, h.detector, h.feature)))
    return out


# --------------------------------------------------------------------------------------------
# classification states (exact per-class counts and the confusion matrix)


def _accuracy(current: ClassificationState, previous: ClassificationState) -> WeekValue:
    def acc(state: ClassificationState) -> float | None:
        return classification_metrics(state, top_k=(1,)).accuracy

    return WeekValue(acc(current), acc(previous), current.n, previous.n)


def _classification_classes(
    classes: Sequence[str], current: ClassificationState, previous: ClassificationState
) -> tuple[tuple[ClassRow, ...], Confusion | None]:
    now = classification_metrics(current, top_k=(1,))
    before = classification_metrics(previous, top_k=(1,))
    rows = tuple(
        ClassRow(
            name=name,
            precision=WeekValue(a.precision, b.precision, a.predicted, b.predicted),
            recall=WeekValue(a.recall, b.recall, a.support, b.support),
        )
        for name, a, b in zip(classes, now.per_class, before.per_class, strict=True)
    )
    confusion = None
    if current.n:
        confusion = Confusion(tuple(classes), tuple(tuple(int(x) for x in row) for row in now.confusion_matrix))
    return rows, confusion


def _label_quality(
    classes: Sequence[str], current: AgreementState | None, previous: AgreementState | None
) -> LabelQuality | None:
    """Agreement this week next to last week, and the classes of this week's disputed items, the
    one annotators agree on least first (None when neither week has a multiply-annotated
    prediction)."""
    now = agreement_metrics(current) if current is not None else None
    before = agreement_metrics(previous) if previous is not None else None
    if not (now and now.items) and not (before and before.items):
        return None

    def week_value(attr: str) -> WeekValue:
        return WeekValue(
            getattr(now, attr) if now else None, getattr(before, attr) if before else None,
            now.items if now else 0, before.items if before else 0,
        )  # fmt: skip

    disputed = [
        DisputedClass(name, c.values, c.specific_agreement, c.disputed)
        for name, c in zip(classes, now.per_class if now else (), strict=False)
        if c.disputed
    ]
    disputed.sort(key=lambda d: (d.specific_agreement if d.specific_agreement is not None else 2.0, -d.disputed, d.name))
    return LabelQuality(
        items=WeekValue(float(now.items) if now else None, float(before.items) if before else None),
        single=now.single if now else 0,
        agreement=week_value("percent_agreement"),
        alpha=week_value("krippendorff_alpha"),
        disputed_items=now.disputed if now else 0,
        most_disputed=tuple(disputed[:MOST_DISPUTED]),
    )


# --------------------------------------------------------------------------------------------
# SLOs


def _slo_status(conn: Connection, model: str, slos: Sequence[SLO], week: Week, as_of: datetime) -> list[SloStatus]:
    if not slos:
        return []
    counts = read_counts(conn, slos, as_of)
    week_sums = incidents.event_sums(conn, model, [s.name for s in slos], week.start, week.end)
    firing = incidents.firing(conn, model)
    out = []
    for slo in slos:
        window = counts[slo.name].window(slo.window_s)
        events, bad = week_sums.get(slo.name, (0.0, 0.0))
        scope = [f"class {slo.class_name}"] if slo.class_name else []
        scope += [f"{k}={v}" for k, v in slo.cohort]
        if slo.detector:
            scope.append(f"detector {slo.detector}")
        out.append(
            SloStatus(
                name=slo.name,
                sli=slo.sli,
                objective=slo.objective,
                window=slo.window,
                scope=", ".join(scope),
                threshold=slo.threshold,
                budget_remaining=budget_remaining(window, slo.objective),
                window_events=window.events,
                window_bad=window.bad,
                week_events=events,
                week_bad=bad,
                firing=tuple(s for s in ("page", "ticket") if s in firing.get(slo.name, ())),
            )
        )
    return out
