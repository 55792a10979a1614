"""Rendering: prepared report data -> one self-contained HTML document (pure, no I/O but the
templates shipped inside the package).

Jinja2 with ``autoescape=True`` and ``StrictUndefined``: a class, cohort or version name prints as
text whatever it contains, and a template typo fails loudly instead of printing nothing. The CSS
is inlined in a ``<style>`` block; charts are inline SVG from :mod:`.charts`; there is no script,
no external font, style or image, so the file opens offline, passes a ``default-src 'none'``
Content-Security-Policy, and prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
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


def _alert(data: ReportData, v: Verdicts) -> bool:
    return any(s.budget_remaining <= 0 for s in data.slos) or any(n.worse for n in v.changes)


def _charts(data: ReportData, cohorts: tuple[CohortRow, ...]) -> _Charts:
    start, end, this_week = data.period_start - timedelta(days=7), data.period_end, data.period_start
    primary: charts.Unit = "share" if data.task == "classification" else "score"

    def trend(series: tuple[Series, ...], title: str, unit: charts.Unit, **kwargs: Any) -> Markup:
        if not series:
            return Markup("")
        return charts.line_chart(
            series,
            start=start,
            end=end,
            title=title,
            unit=unit,
            shade_until=this_week,
            x_offset=trend_step / 2,
            width=500,
            **kwargs,
        )

    trend_step = timedelta(seconds=parse_window(data.trend_window))

    step = timedelta(seconds=parse_window(data.drift_window)) if data.drift_window else timedelta(hours=1)

    drift = []
    for d in data.drift:
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
            start=data.period_start,
            end=data.period_end,
            title=title,
            unit="score",
            thresholds=threshold,
            flagged=[(ts, ts + step) for ts in d.flagged],
            x_offset=step / 2,
            width=500,
            height=150,
        )
        drift.append(_DriftChart(title, svg))
    lo_hi = [x for row in cohorts for x in row.trend if x is not None]
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
                row.trend,
                title=f"{data.primary_metric} of {row.key} {row.value} per {data.trend_window}",
                y_range=spark_range,
            )
            for row in cohorts
        ),
        budget=tuple(
            charts.budget_bar(s.budget_remaining, title=f"{fmt.pct(s.budget_remaining, 0)} of the error budget left")
            for s in data.slos
        ),
    )
