"""The charts of the model pages, from the stored metric history, for the page's window, range,
version and cohort. Each builder returns charts keyed by id; ``/models/M/chart.json?id=...`` serves
the same chart's data to the hover script, so what a page draws and what its hover says agree."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection

from monitor.server.console.charts import Chart, Line, lines_by, merged_line, window_starts
from monitor.server.console.context import ModelContext
from monitor.server.reports.charts import Threshold
from monitor.server.services.console_data import MetricRow, metric_rows
from monitor.server.settings import parse_window

Builder = Callable[[Connection, ModelContext], list[Chart]]


def prefetch(conn: Connection, c: ModelContext, metrics: list[str]) -> None:
    """Read ``metrics`` of the page's window, range and version for every slice in one scan, for
    the charts of the page to share (each reading its own would scan the range's rows again)."""
    c.cache["rows"] = (frozenset(metrics), metric_rows(conn, c.model, window=c.view.window, metrics=metrics, since=c.since,
                                                       until=c.until, version=c.view.version_filter, cohort=None))  # fmt: skip


def page_rows(conn: Connection, c: ModelContext, metrics: list[str], cohort: str | None) -> list[MetricRow]:
    """Rows of the page's window, range and version: from :func:`prefetch` when it has them."""
    cached = c.cache.get("rows")
    if cached is None or not set(metrics) <= cached[0]:
        return metric_rows(conn, c.model, window=c.view.window, metrics=metrics, since=c.since, until=c.until,
                           version=c.view.version_filter, cohort=cohort)  # fmt: skip
    wanted = set(metrics)
    rows = [r for r in cached[1] if r.metric in wanted]
    if cohort is None:
        return rows
    if cohort == "":
        return [r for r in rows if r.cohort_key == ""]
    return [r for r in rows if r.cohort == cohort]


def _starts(c: ModelContext, window: str | None = None) -> list[datetime]:
    w = window or c.view.window
    return window_starts(c.since, c.until, c.view.window_span if window is None else _span(w))


def _span(window: str) -> timedelta:
    return timedelta(seconds=parse_window(window))


def _chart(c: ModelContext, key: str, title: str, unit: str, lines: tuple[Line, ...], **kw: object) -> Chart:
    return Chart(key=key, title=title, unit=unit, start=c.since, end=c.until, window=c.view.window_span, lines=lines, **kw)  # type: ignore[arg-type]


def _by_version(c: ModelContext, rows: list[MetricRow]) -> tuple[Line, ...]:
    return lines_by(rows, lambda r: r.version, starts=_starts(c))


def _scope(c: ModelContext) -> str:
    parts = [p for p in (c.view.version, c.view.cohort.replace(":", "=", 1)) if p]
    return f" ({', '.join(parts)})" if parts else ""


def quality(conn: Connection, c: ModelContext) -> list[Chart]:
    rows = [r for r in page_rows(conn, c, [c.primary], c.view.cohort) if r.cls == ""]
    note = "No labelled predictions in this range yet: quality needs ground truth."
    return [_chart(c, "quality", f"{c.primary_name} per {c.view.window} window by version{_scope(c)}", "share",
                   _by_version(c, rows), note=note)]  # fmt: skip


def cohorts(conn: Connection, c: ModelContext) -> list[Chart]:
    rows = [r for r in page_rows(conn, c, [c.primary], None) if r.cls == "" and r.cohort_key]
    starts = _starts(c)
    if c.task == "classification":  # accuracy merges exactly over versions: one line per slice
        by_slice: dict[str, list[MetricRow]] = defaultdict(list)
        for r in rows:
            by_slice[r.cohort_value].append(r)
        lines = tuple(merged_line(name, by_slice[name], starts) for name in sorted(by_slice))
    else:
        several = len({r.version for r in rows}) > 1
        lines = lines_by(rows, lambda r: f"{r.version} {r.cohort_value}" if several else r.cohort_value, starts=starts)
    title = f"{c.primary_name} per {c.view.window} window by cohort" + (f" ({c.view.version})" if c.view.version else "")
    return [_chart(c, "cohorts", title, "share", lines, note="No cohort has labelled predictions in this range yet.")]


def estimate(conn: Connection, c: ModelContext) -> list[Chart]:
    """The label-free estimate beside the realised accuracy (one line each, versions merged)."""
    if c.task != "classification":
        return []
    rows = page_rows(conn, c, ["accuracy", "estimated_accuracy"], c.view.cohort)
    starts = _starts(c)
    realised = merged_line("realised accuracy", (r for r in rows if r.metric == "accuracy" and r.cls == ""), starts)
    estimated = merged_line("label-free estimate", (r for r in rows if r.metric == "estimated_accuracy" and r.cls == ""), starts)
    note = ("No estimate in this range: the drift job estimates completed windows once the version's reference has "
            f"{c.settings.drift_min_labels} labelled predictions (windows: {', '.join(c.settings.drift_windows)}).")  # fmt: skip
    return [_chart(c, "estimate", f"Label-free estimate and realised accuracy per {c.view.window} window{_scope(c)}",
                   "share", (realised, estimated), note=note)]  # fmt: skip


def ece(conn: Connection, c: ModelContext) -> list[Chart]:
    metric = "ece" if c.task == "classification" else "dece"
    rows = [r for r in page_rows(conn, c, [metric], c.view.cohort) if r.cls == ""]
    name = "ECE" if metric == "ece" else "D-ECE"
    thresholds = tuple(Threshold(s.threshold, f"SLO {s.name}") for s in c.settings.slos
                       if s.model == c.model and s.sli == "ece" and s.threshold is not None)  # fmt: skip
    return [_chart(c, "ece", f"{name} per {c.view.window} window by version{_scope(c)}", "score", _by_version(c, rows),
                   thresholds=thresholds, note="No labelled predictions in this range yet: calibration needs ground truth.")]  # fmt: skip


def service(conn: Connection, c: ModelContext) -> list[Chart]:
    metrics = ["latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate", "predictions"]
    rows = [r for r in page_rows(conn, c, metrics, c.view.cohort) if r.cls == ""]
    latency_slos = tuple(Threshold(s.threshold * 1000, f"SLO {s.name}") for s in c.settings.slos
                         if s.model == c.model and s.sli == "latency" and s.threshold is not None)  # fmt: skip
    out = []
    for q in ("p95", "p50", "p99"):
        chosen = [r for r in rows if r.metric == f"latency_{q}_ms"]
        out.append(_chart(c, f"latency_{q}", f"Latency {q} per {c.view.window} window by version{_scope(c)}", "ms",
                          _by_version(c, chosen), thresholds=latency_slos if q == "p99" else ()))  # fmt: skip
    out.append(_chart(c, "errors", f"Error rate per {c.view.window} window by version{_scope(c)}", "share",
                      _by_version(c, [r for r in rows if r.metric == "error_rate"])))  # fmt: skip
    out.append(_chart(c, "traffic", f"Predictions per {c.view.window} window by version{_scope(c)}", "score",
                      _by_version(c, [r for r in rows if r.metric == "predictions"])))  # fmt: skip
    return out


def drift_window(c: ModelContext) -> str | None:
    """The drift window the page shows: the page's window when the drift job scores it, else the
    shortest one it scores."""
    windows = c.settings.drift_windows
    if not windows:
        return None
    return c.view.window if c.view.window in windows else min(windows, key=parse_window)


DRIFT_METRICS = ("drift_score", "drift_threshold", "drift_detected", "drift_p_value")


def drift_rows(conn: Connection, c: ModelContext) -> list[MetricRow]:
    window = drift_window(c)
    if window is None:
        return []
    return metric_rows(conn, c.model, window=window, metrics=DRIFT_METRICS, since=c.since, until=c.until,
                       version=c.view.version_filter, cohort=None)  # fmt: skip


def drift(conn: Connection, c: ModelContext, rows: list[MetricRow] | None = None) -> list[Chart]:
    """One chart per detector and feature: its score per cohort slice (lines), its threshold, and
    the windows it flagged for the page's slice (shaded)."""
    window = drift_window(c)
    if window is None:
        return []
    rows = drift_rows(conn, c) if rows is None else rows
    by_detector: dict[str, list[MetricRow]] = defaultdict(list)
    for r in rows:
        by_detector[r.cls].append(r)
    starts = _starts(c, window)
    span = _span(window)
    out = []
    for detector in sorted(by_detector):
        mine = by_detector[detector]
        several = len({r.version for r in mine}) > 1
        scores = [r for r in mine if r.metric == "drift_score"]
        lines = lines_by(scores, _drift_label(several), starts=starts)
        flagged = tuple(sorted({(r.window_start, r.window_end) for r in mine if r.metric == "drift_detected"
                                and r.value == 1.0 and r.cohort == c.view.cohort}))  # fmt: skip
        thresholds = sorted({r.value for r in mine if r.metric == "drift_threshold" and r.value is not None})
        th = (Threshold(thresholds[-1], "threshold"),) if len(thresholds) == 1 else ()
        where = c.view.cohort.replace(":", "=", 1) if c.view.cohort else "all traffic"
        out.append(Chart(key=f"drift:{detector}", title=f"{detector} drift score per {window} window by cohort",
                         unit="score", start=c.since, end=c.until, window=span, lines=lines, thresholds=th, flagged=flagged,
                         note="No window scored in this range.", remark=f"Shaded: windows flagged for {where}." if flagged else f"No window flagged for {where}."))  # fmt: skip
    return out


def _drift_label(with_version: bool) -> Callable[[MetricRow], str]:
    def label(r: MetricRow) -> str:
        return (f"{r.version} " if with_version else "") + (r.cohort_value or "all traffic")

    return label


BUILDERS: dict[str, Builder] = {
    "quality": quality, "cohorts": cohorts, "estimate": estimate, "ece": ece, "service": service, "drift": drift,
}  # fmt: skip


def chart_by_id(conn: Connection, c: ModelContext, chart_id: str) -> Chart | None:
    """The chart ``chart_id`` names (``quality``, ``latency_p95``, ``drift:mmd:embedding`` ...)."""
    group = chart_id.split(":", 1)[0] if chart_id.startswith("drift:") else chart_id
    group = {"latency_p50": "service", "latency_p95": "service", "latency_p99": "service", "errors": "service",
             "traffic": "service"}.get(group, group)  # fmt: skip
    builder = BUILDERS.get(group)
    if builder is None:
        return None
    return next((chart for chart in builder(conn, c) if chart.key == chart_id), None)
