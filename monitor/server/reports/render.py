"""Rendering: prepared report data -> one self-contained HTML document (pure, no I/O but the
templates shipped inside the package).

Jinja2 with ``autoescape=True`` and ``StrictUndefined``: a class, cohort or version name prints as
text whatever it contains, and a template typo fails loudly instead of printing nothing. The CSS
is inlined in a ``<style>`` block; charts are inline SVG from :mod:`.charts`; there is no script,
no external font, style or image, so the file opens offline, passes a ``default-src 'none'``
Content-Security-Policy, and prints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from monitor import __version__
from monitor.server.reports import charts, fmt
from monitor.server.reports.data import CohortRow, ReportData, Series
from monitor.server.reports.verdicts import ECE_TARGET, Verdicts, verdicts
from monitor.server.reports.views import (
    MIN_LABELS,
    busiest,
    class_mix,
    classes_by_change,
    confused_pairs,
    notable,
    rank_cohorts,
)
from monitor.server.settings import parse_window


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The template environment (built once per process; templates are package data)."""
    env = Environment(
        loader=PackageLoader("monitor.server.reports", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )
    env.filters.update(
        num=fmt.num,
        pct=fmt.pct,
        points=fmt.points,
        signed_pct=fmt.signed_pct,
        relative=fmt.relative,
        decimal=fmt.decimal,
        signed_decimal=fmt.signed_decimal,
        ms=fmt.ms,
        money=fmt.money,
        duration=fmt.duration,
        when=fmt.when,
        day=fmt.day,
        stamp=fmt.stamp,
    )
    env.tests["notable"] = notable
    return env


def render_report(data: ReportData) -> str:
    """The report as an HTML document."""
    v = verdicts(data)
    template = environment().get_template("report.html.j2")
    cohorts = rank_cohorts(data)
    views = _Views(
        classes=classes_by_change(data),
        cohorts=cohorts,
        mix=class_mix(data) if data.task == "classification" else (),
        confused=confused_pairs(data.confusion),
    )
    return template.render(
        r=data,
        v=v,
        c=_charts(data, cohorts),
        views=views,
        version=__version__,
        min_labels=MIN_LABELS,
        busiest=busiest(data),
        one_day=timedelta(days=1),
        alert_summary=_alert(data, v),
        total_predictions=sum(x.predictions.current or 0 for x in data.versions),
        drift_flagged=sorted(
            {d.label for d in data.drift if d.drifted} | {h.label for row in data.cohorts for h in row.drifted}
        ),
        drift_scored=sorted({d.label for d in data.drift}),
        class_index={name: i for i, name in enumerate(c.name for c in data.classes)},
    )


@dataclass(frozen=True, slots=True)
class _Views:
    classes: tuple[Any, ...]
    cohorts: tuple[CohortRow, ...]
    mix: tuple[Any, ...]
    confused: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _DriftChart:
    title: str
    svg: Markup


@dataclass(frozen=True, slots=True)
class _Charts:
    quality: Markup
    coverage: Markup
    calibration: Markup
    reliability: Markup
    confusion: Markup
    estimate: Markup
    latency: Markup
    errors: Markup
    drift: tuple[_DriftChart, ...]
    sparks: tuple[Markup, ...]
    budget: tuple[Markup, ...]
    #: what the trend charts and sparklines span: "2 weeks", or the stretch that has data
    trend_span: str
    trend_zoomed: bool


def _alert(data: ReportData, v: Verdicts) -> bool:
    return any(s.budget_remaining <= 0 for s in data.slos) or any(n.worse for n in v.changes)


def time_axis(times: Iterable[datetime], step: timedelta, lo: datetime, hi: datetime) -> tuple[datetime, datetime]:
    """The span a time axis shows: all of ``[lo, hi)`` when the data (windows of length ``step``
    starting at ``times``) fill half of it or more, else the data's own span and a window more on
    each side, within ``[lo, hi)``: six hours of data are drawn over eight hours, not a fortnight."""
    chosen = sorted(t for t in times if lo <= t < hi)
    if not chosen:
        return lo, hi
    first, last = chosen[0], chosen[-1] + step
    if last - first >= (hi - lo) / 2:
        return lo, hi
    return max(lo, first - step), min(hi, last + step)


def _drawable(series: Sequence[Series]) -> bool:
    """A trend needs two points in some line: one dot says nothing about a direction."""
    return any(sum(1 for _, v in s.points if v is not None) >= 2 for s in series)


def _span_label(start: datetime, end: datetime, step: timedelta, whole: bool) -> str:
    if whole:
        return f"{(end - start).days // 7} weeks"
    if step < timedelta(days=1):
        return f"{start:%a %d %H:%M} – {end:%a %d %H:%M}" if start.date() != end.date() else f"{start:%a %d %H:%M} – {end:%H:%M}"
    return f"{start:%a %d} – {end - timedelta(days=1):%a %d}"


def _charts(data: ReportData, cohorts: tuple[CohortRow, ...]) -> _Charts:
    first, this_week = data.period_start - timedelta(days=7), data.period_start
    primary: charts.Unit = "share" if data.task == "classification" else "score"
    trend_step = timedelta(seconds=parse_window(data.trend_window))
    trend_series = (data.quality_trend, data.coverage_trend, data.calibration_trend, data.estimate_trend,
                    data.latency_trend, data.error_trend)  # fmt: skip
    # one axis for every trend chart and sparkline, fitted to the times that have data
    times = [ts for group in trend_series for s in group for ts, v in s.points if v is not None]
    times += [first + i * trend_step for row in cohorts for i, v in enumerate(row.trend) if v is not None]
    start, end = time_axis(times, trend_step, first, data.period_end)
    week_marks = ((data.period_start, f"week from {data.period_start:%a %d}"),
                  (data.period_end, f"week to {data.period_end - timedelta(days=1):%a %d}"))  # fmt: skip

    def trend(series: tuple[Series, ...], title: str, unit: charts.Unit, **kwargs: Any) -> Markup:
        if not _drawable(series):
            return Markup("")
        return charts.line_chart(
            series,
            start=start,
            end=end,
            title=title,
            unit=unit,
            shade_until=this_week,
            x_offset=trend_step / 2,
            marks=week_marks,
            width=500,
            **kwargs,
        )

    step = timedelta(seconds=parse_window(data.drift_window)) if data.drift_window else timedelta(hours=1)
    drift_times = [ts for d in data.drift for ts, v in d.points if v is not None]
    drift_start, drift_end = time_axis(drift_times, step, data.period_start, data.period_end)

    drift = []
    for d in data.drift:
        if not _drawable([Series(d.label, d.points)]):
            continue
        threshold = (
            [charts.Threshold(d.threshold, f"threshold {fmt.decimal(d.threshold)}")] if d.threshold is not None else []
        )
        title = f"{d.label} on {d.version}" + (
            (
                f" · drift from {fmt.when(d.flagged[0])}, flagged {len(d.flagged)}×"
                if d.drifted
                else f" · {len(d.flagged)} isolated flag{'s' if len(d.flagged) != 1 else ''}, within chance"
            )
            if d.flagged
            else " · not flagged"
        )
        if d.alpha is not None:
            title += f" (at p ≤ {d.alpha:g})"
        svg = charts.line_chart(
            [Series(d.label, d.points)],
            start=drift_start,
            end=drift_end,
            title=title,
            unit="score",
            thresholds=threshold,
            flagged=[(ts, ts + step) for ts in d.flagged],
            x_offset=step / 2,
            marks=week_marks,
            width=500,
            height=150,
        )
        drift.append(_DriftChart(title, svg))
    shown = [i for i in range(max((len(row.trend) for row in cohorts), default=0)) if start <= first + i * trend_step < end]
    spark_values = [tuple(row.trend[i] for i in shown if i < len(row.trend)) for row in cohorts]
    lo_hi = [x for values in spark_values for x in values if x is not None]
    spark_range = (min(lo_hi), max(lo_hi)) if lo_hi else None
    return _Charts(
        quality=trend(data.quality_trend, f"{data.primary_metric} by version", primary),
        coverage=trend(data.coverage_trend, "label coverage by version", "share"),
        calibration=trend(
            data.calibration_trend,
            f"{data.calibration_metric} by version",
            "score",
            thresholds=[charts.Threshold(ECE_TARGET, f"target {ECE_TARGET:g}")],
        ),
        reliability=charts.reliability_diagram(data.reliability, title="reliability diagram")
        if data.reliability
        else Markup(""),
        confusion=charts.heatmap(data.confusion.counts, data.confusion.classes, title="confusion matrix")
        if data.confusion
        else Markup(""),
        estimate=trend(data.estimate_trend, "label-free estimate and realised accuracy", "share"),
        latency=trend(data.latency_trend, "p95 latency by version", "ms", y_range=(0.0, None)),
        errors=trend(data.error_trend, "error rate by version", "share", y_range=(0.0, None)),
        drift=tuple(drift),
        sparks=tuple(
            charts.sparkline(
                values,
                title=f"{data.primary_metric} of {row.key} {row.value} per {data.trend_window}",
                y_range=spark_range,
            )
            for row, values in zip(cohorts, spark_values, strict=True)
        ),
        budget=tuple(
            charts.budget_bar(s.budget_remaining, title=f"{fmt.pct(s.budget_remaining, 0)} of the error budget left")
            for s in data.slos
        ),
        trend_span=_span_label(start, end, trend_step, (start, end) == (first, data.period_end)),
        trend_zoomed=(start, end) != (first, data.period_end),
    )
