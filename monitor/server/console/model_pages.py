"""The model pages: quality (overview), classes and the confusion matrix, calibration, drift,
latency and errors, and the JSON of any of their charts."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy import Connection

from monitor.server.api.deps import StateDep
from monitor.server.console import charts
from monitor.server.console.auth import ViewerDep
from monitor.server.console.context import TABS, ModelContext, model_page
from monitor.server.console.model_charts import (
    chart_by_id,
    cohorts,
    drift,
    drift_rows,
    drift_window,
    ece,
    estimate,
    page_rows,
    prefetch,
    quality,
    service,
)
from monitor.server.console.params import parse_time
from monitor.server.console.web import ConsoleError, json_response, render
from monitor.server.reports import charts as svg
from monitor.server.reports.data import ReliabilityBin, ReliabilityCurve
from monitor.server.services.console_data import (
    MetricRow,
    drift_references,
    metric_rows,
    newest_window,
    window_calibration,
    window_classification,
)
from monitor.server.settings import parse_window

router = APIRouter(include_in_schema=False)


def page(request: Request, c: ModelContext, template: str, **context: Any) -> Response:
    return render(request, template, {"c": c, "viewer": c.viewer, "tabs": TABS, "title": f"{c.model} · cvmon", **context})


def _chart_views(c: ModelContext, built: list[charts.Chart]) -> list[dict[str, Any]]:
    return [{"chart": chart, "svg": charts.render(chart, c.src(chart.key))} for chart in built]


# --------------------------------------------------------------------------------------------
# quality


def _newest(conn: Connection, c: ModelContext) -> dict[str, list[MetricRow]]:
    """Per cohort slice, the rows of its newest window in the range (the last point of the
    charts): the page's window for quality and traffic, the drift window for drift flags. Not the
    rolling window of /metrics, which holds nothing while traffic is late (or, in the demo,
    arrives with compressed timestamps). Read from the last few windows only."""
    out: dict[str, list[MetricRow]] = defaultdict(list)
    for window, metrics in ((c.view.window, [c.primary, "predictions", "label_coverage"]), (drift_window(c), ["drift_detected"])):
        if window is None:
            continue
        newest = newest_window(conn, c.model, window=window, metric=metrics[-1], since=c.since, until=c.until)
        if newest is None:
            continue
        rows = metric_rows(conn, c.model, window=window, metrics=metrics, since=newest - 2 * timedelta(seconds=parse_window(window)),
                           until=newest + timedelta(seconds=1), version=c.view.version_filter, cohort=None)  # fmt: skip
        latest: dict[str, datetime] = {}
        for r in rows:
            latest[r.cohort] = max(latest.get(r.cohort, r.window_start), r.window_start)
        for r in rows:
            if r.window_start == latest[r.cohort]:
                out[r.cohort].append(r)
    return out


def _summary(rows: list[MetricRow], c: ModelContext) -> dict[str, Any]:
    def pick(metric: str) -> list[MetricRow]:
        return [r for r in rows if r.metric == metric and r.cls == ""]

    quality_rows = pick(c.primary)
    if c.task == "classification":
        q = charts.combine(quality_rows)
        value, n = (q[1], q[2]) if q else (None, 0)
    else:  # mAP does not merge over versions: the busiest version's
        best = max(quality_rows, key=lambda r: r.n, default=None)
        value, n = (best.value, best.n) if best else (None, 0)
    coverage = charts.combine(pick("label_coverage"))
    flags = sorted({r.cls for r in rows if r.metric == "drift_detected" and r.value == 1.0})
    starts = [r.window_start for r in rows if r.metric == "predictions"]
    return {"quality": value, "quality_n": n, "predictions": sum(r.n for r in pick("predictions")),
            "coverage": coverage[1] if coverage else None, "drift": flags, "window_start": max(starts, default=None)}  # fmt: skip


@router.get("/models/{model}")
def overview(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="") as (conn, c):
        prefetch(conn, c, [c.primary, "estimated_accuracy"] if c.task == "classification" else [c.primary])
        built = quality(conn, c) + cohorts(conn, c) + estimate(conn, c)
        latest = _newest(conn, c)
    cohort_chart = next(ch for ch in built if ch.key == "cohorts")
    sparks = {line.label: line for line in cohort_chart.lines}
    rows = []
    for slice_ in c.cohorts:
        summary = _summary(latest.get(slice_, []), c)
        line = sparks.get(slice_.partition(":")[2])
        values = [p[1] for p in line.points] if line else []
        rows.append({"slice": slice_, **summary, "spark": charts.spark(values, f"{c.primary_name} of {slice_}", share=False),
                     "url": c.url("", cohort=slice_)})  # fmt: skip
    rows.sort(key=lambda r: (not r["drift"], r["quality"] if r["quality"] is not None else 2.0))
    return page(request, c, "model_overview.html.j2", charts=_chart_views(c, built),
                summary=_summary(latest.get(c.view.cohort, []), c), cohort_rows=rows)  # fmt: skip


# --------------------------------------------------------------------------------------------
# classes and the confusion matrix


_SORTS = ("class", "precision", "recall", "f1", "support", "change")


def _at(c: ModelContext, rows: list[MetricRow], metric: str) -> tuple[datetime | None, list[datetime]]:
    """The window the table and the matrix show (``at``, default the newest with data) and the
    windows of the range with a whole-version value of ``metric`` (in ``rows``), newest first."""
    starts = sorted({r.window_start for r in rows if r.metric == metric and r.cohort_key == "" and r.cls == ""}, reverse=True)
    text = c.view.extra.get("at")
    if text:
        chosen = parse_time(text, "at")
        if chosen not in starts:
            raise ConsoleError(400, f"no evaluated {c.view.window} window starts at {text[:30]} in this range; "
                                    "pick one from the list")  # fmt: skip
        return chosen, starts
    return (starts[0] if starts else None), starts


@router.get("/models/{model}/classes")
def classes(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="classes", extra=("at", "sort", "dir")) as (conn, c):
        trend_metric = "recall" if c.task == "classification" else "ap"
        prefetch(conn, c, [c.primary, trend_metric])
        rows = page_rows(conn, c, [c.primary, trend_metric], "")
        at, starts = _at(c, rows, c.primary)
        names = list(c.info.spec.classes)
        trend = [r for r in rows if r.metric == trend_metric and r.cls]
        matrix = None
        table: list[dict[str, Any]] = []
        if at is not None and c.task == "classification":
            m = window_classification(conn, c.model, n_classes=len(names), start=at, end=at + c.view.window_span,
                                      version=c.view.version_filter, cohort=c.view.cohort)  # fmt: skip
            if m is not None:
                matrix = m.confusion_matrix.tolist()
                names += [f"#{i}" for i in range(len(names), len(m.per_class))]
                table = [{"name": names[i], "precision": pc.precision, "recall": pc.recall, "f1": pc.f1,
                          "support": pc.support, "predicted": pc.predicted} for i, pc in enumerate(m.per_class)]  # fmt: skip
        elif at is not None:
            at_rows = metric_rows(conn, c.model, window=c.view.window, metrics=["ap", "ap50", "precision", "recall"], since=at,
                                  until=at + c.view.window_span, version=c.view.version_filter, cohort="")  # fmt: skip
            table, version = _detection_table([r for r in at_rows if r.cls], names)
            trend = [r for r in trend if r.version == version]  # AP does not merge over versions
    by_class: dict[str, list[MetricRow]] = defaultdict(list)
    for r in trend:
        by_class[r.cls].append(r)
    # the trend column of a 100-class table stays small: at most the last 48 windows of the range
    grid = charts.window_starts(c.since, c.until, c.view.window_span)[-48:]
    for row in table:
        line = charts.merged_line(row["name"], by_class.get(row["name"], []), grid)
        values = [p[1] for p in line.points]
        row["spark"] = charts.spark(values, f"{trend_metric} of {row['name']} per {c.view.window} window", share=False)
        defined = [v for v in values if v is not None]
        row["change"] = defined[-1] - defined[0] if len(defined) > 1 else None
    sort = c.view.extra.get("sort", "class")
    sort = sort if sort in _SORTS else "class"
    descending = c.view.extra.get("dir") == "desc"
    key = "name" if sort == "class" else sort
    present = [r for r in table if r.get(key) is not None]
    table = sorted(present, key=lambda r: r[key], reverse=descending) + [r for r in table if r.get(key) is None]
    context: dict[str, Any] = {"at": at, "starts": starts, "table": table, "sort": sort, "descending": descending,
                               "trend_metric": trend_metric, "matrix": None, "confusions": []}  # fmt: skip
    if matrix is not None and at is not None:
        cell = c.url("predictions", at=at.strftime("%Y-%m-%dT%H:%MZ"), sort=None, dir=None)
        context["matrix"] = svg.heatmap(matrix, names, title=f"Confusion matrix, {c.view.window} window from {at:%Y-%m-%d %H:%M} UTC",
                                        attrs={"data-href": cell + "&true={t}&pred={p}"})  # fmt: skip
        cells = [(matrix[i][j], i, j) for i in range(len(matrix)) for j in range(len(matrix)) if i != j and matrix[i][j]]
        context["confusions"] = [{"true": names[i], "pred": names[j], "count": n, "url": f"{cell}&true={i}&pred={j}"}
                                 for n, i, j in sorted(cells, reverse=True)[:15]]  # fmt: skip
        context["correct_url"] = cell
    return page(request, c, "model_classes.html.j2", **context)


def _detection_table(rows: list[MetricRow], names: list[str]) -> tuple[list[dict[str, Any]], str | None]:
    """Per-class AP of a detection model in one window: stored per version (AP does not merge
    over versions), so the page's version, or the busiest one (returned with the table)."""
    support: defaultdict[str, int] = defaultdict(int)
    for r in rows:
        if r.metric == "ap":
            support[r.version] += r.n
    if not support:
        return [], None
    version = max(support, key=lambda v: support[v])
    values: dict[str, dict[str, Any]] = {n: {"name": n, "support": 0} for n in names}
    for r in rows:
        if r.version == version and r.cls in values:
            values[r.cls][r.metric] = r.value
            if r.metric == "ap":
                values[r.cls]["support"] = r.n
    return list(values.values()), version


# --------------------------------------------------------------------------------------------
# calibration, drift, latency and errors


@router.get("/models/{model}/calibration")
def calibration(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="calibration", extra=("at",)) as (conn, c):
        metric = "ece" if c.task == "classification" else "dece"
        prefetch(conn, c, [metric])
        built = ece(conn, c)
        at, starts = _at(c, page_rows(conn, c, [metric], ""), metric)
        curves: list[ReliabilityCurve] = []
        table = []
        if at is not None and c.task == "classification":
            by_version = window_calibration(conn, c.model, n_classes=len(c.info.spec.classes), start=at,
                                            end=at + c.view.window_span, version=c.view.version_filter, cohort=c.view.cohort)  # fmt: skip
            for version, m in by_version.items():
                bins = tuple(ReliabilityBin(b.lower, b.upper, b.count, b.confidence, b.accuracy) for b in m.reliability)
                curves.append(ReliabilityCurve(version, bins, m.ece, m.n))
                table.append({"version": version, "metrics": m})
    diagram = svg.reliability_diagram(curves, title="Reliability diagram") if curves else None
    return page(request, c, "model_calibration.html.j2", charts=_chart_views(c, built), at=at, starts=starts,
                diagram=diagram, table=table)  # fmt: skip


@router.get("/models/{model}/drift")
def drift_page(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="drift") as (conn, c):
        rows = drift_rows(conn, c)
        built = drift(conn, c, rows)
        references = drift_references(conn, c.model)
    summary: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        entry = summary.setdefault((r.cls, r.cohort, r.version), {"detector": r.cls, "cohort": r.cohort or "all traffic",
                                   "version": r.version, "flagged": 0, "scored": 0, "first": None, "last": {}})  # fmt: skip
        if r.metric == "drift_detected":
            entry["scored"] += 1
            if r.value == 1.0:
                entry["flagged"] += 1
                entry["first"] = entry["first"] or r.window_start
        entry["last"][r.metric] = r  # rows come oldest first: the newest window wins
    table = sorted(summary.values(), key=lambda e: (-e["flagged"], e["detector"], e["cohort"], e["version"]))
    return page(request, c, "model_drift.html.j2", charts=_chart_views(c, built), table=table, references=references,
                drift_window=drift_window(c))  # fmt: skip


@router.get("/models/{model}/service")
def service_page(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="service") as (conn, c):
        built = service(conn, c)
    return page(request, c, "model_service.html.j2", charts=_chart_views(c, built))


@router.get("/models/{model}/chart.json")
def chart_json(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    """The data of one chart of a model page: what its hover shows (value and samples per window)."""
    with model_page(request, state, viewer, model, tab="", extra=("id",)) as (conn, c):
        chart_id = c.view.extra.get("id", "")
        chart = chart_by_id(conn, c, chart_id)
    if chart is None:
        raise ConsoleError(404, f"no chart {chart_id[:60]!r} on this model's pages")
    return json_response(charts.as_json(chart))
