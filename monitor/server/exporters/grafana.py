"""Grafana dashboards (executive, on-call, debug) and provisioning, generated from the names table.

Every metric a query reads goes through :meth:`_Queries.sel`, which looks the name up in the
names table (:data:`monitor.server.names.METRIC`) and checks the labels it matches on,
so renaming or dropping a metric or a label makes generation fail instead of leaving a blank
panel. ``cvmon grafana render --out grafana/`` writes::

    grafana/dashboards/cvmon-executive.json   SLO status and budget left, accuracy / mAP trend, cost per
                                              1 000 inferences, label agreement, incidents
    grafana/dashboards/cvmon-oncall.json      burn rates, latency p50/p95/p99 by version, error rate,
                                              precision / recall of chosen classes, recent drift
    grafana/dashboards/cvmon-debug.json       confusion matrix, reliability diagram, per-cohort breakdown,
                                              label coverage and label latency
    grafana/provisioning/datasources/cvmon.yaml
    grafana/provisioning/dashboards/cvmon.yaml

Incidents are the ``CvmonErrorBudgetBurn`` alerts of the rendered rules, read from Prometheus'
own ``ALERTS`` series: the only name a dashboard uses that is not in the table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from monitor.server.names import METRIC, MetricName

#: Series Prometheus itself writes that dashboards may read, always with these matchers.
PROMETHEUS_SERIES: Final[Mapping[str, str]] = {"ALERTS": 'alertname="CvmonErrorBudgetBurn"'}
DASHBOARD_DIR: Final = "dashboards"
DEFAULT_COHORT_KEYS: Final = ("camera",)
_ALERT_NAME: Final = "CvmonErrorBudgetBurn"
_DS: Final = {"type": "prometheus", "uid": "${datasource}"}
_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)")


class UnknownMetric(KeyError):
    """A dashboard asked for a metric (or a label) the names table does not have."""


class _Queries:
    """Builds selectors from the names table, refusing names and labels it does not know."""

    def __init__(self, metrics: Mapping[str, MetricName], cohort_keys: Sequence[str]) -> None:
        self.metrics = metrics
        self.cohort_keys = tuple(cohort_keys)

    def metric(self, name: str) -> MetricName:
        try:
            return self.metrics[name]
        except KeyError:
            raise UnknownMetric(
                f"{name} is not in the names table (monitor/server/names.py)"
            ) from None

    def sel(self, name: str, *matchers: str, whole: bool = True, series: str | None = None) -> str:
        """``name{matchers}``. ``whole`` adds ``key=""`` for every cohort key, selecting the
        series of the whole model version rather than one cohort (only for metrics that carry
        cohort labels). ``series`` picks a histogram's ``_bucket`` / ``_sum`` / ``_count``."""
        metric = self.metric(name)
        labels = set(metric.labels) | (set(self.cohort_keys) if metric.cohort_labels else set())
        for matcher in matchers:
            for label, _ in _LABEL.findall(matcher):
                if label not in labels:
                    raise UnknownMetric(f"{name} has no label {label!r} (it has {sorted(labels)})")
        extra = [f'{k}=""' for k in self.cohort_keys] if whole and metric.cohort_labels else []
        body = ",".join([*matchers, *extra])
        return f"{metric.name}{series or ''}" + (f"{{{body}}}" if body else "")

    def alerts(self, *matchers: str) -> str:
        """Prometheus' ALERTS series of the budget-burn alerts cvmon renders."""
        return "ALERTS{" + ",".join([PROMETHEUS_SERIES["ALERTS"], 'alertstate="firing"', *matchers]) + "}"


MODEL = 'model=~"$model"'
VERSION = 'version=~"$version"'
WINDOW = 'window="$window"'
MVW = (MODEL, VERSION, WINDOW)
IOU = 'iou="0.50:0.95"'
PAGE = 'severity="page"'
TICKET = 'severity="ticket"'
REJECTED = 'outcome="rejected"'


# --------------------------------------------------------------------------------------------
# panels


@dataclass(frozen=True, slots=True)
class Target:
    """One query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False
    table: bool = False


def _targets(targets: Sequence[Target]) -> list[dict[str, Any]]:
    return [
        {
            "refId": chr(ord("A") + i),
            "datasource": _DS,
            "expr": t.expr,
            "legendFormat": t.legend or "__auto",
            "instant": t.instant,
            "range": not t.instant,
            "format": "table" if t.table else "time_series",
        }
        for i, t in enumerate(targets)
    ]


_BUDGET_STEPS: Final = (("red", None), ("orange", 0.0), ("yellow", 0.25), ("green", 0.5))


def panel(
    kind: str,
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    w: int = 12,
    h: int = 8,
    unit: str = "short",
    lo: float | None = None,
    hi: float | None = None,
    steps: Sequence[tuple[str, float | None]] = (),
    options: Mapping[str, Any] | None = None,
    transformations: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A Grafana panel (ids and positions are set by :func:`_layout`)."""
    defaults: dict[str, Any] = {"unit": unit}
    defaults.update({k: v for k, v in (("min", lo), ("max", hi)) if v is not None})
    if steps:
        defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": c, "value": v} for c, v in steps]}
    out: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": _DS,
        "gridPos": {"x": 0, "y": 0, "w": w, "h": h},
        "targets": _targets(targets),
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": dict(options or {}),
    }
    if transformations:
        out["transformations"] = [dict(t) for t in transformations]
    return out


def row(title: str) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"x": 0, "y": 0, "w": 24, "h": 1},
    }


def _layout(panels: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Ids in order and positions left to right, wrapping at Grafana's 24 columns."""
    out, x, y, row_h = [], 0, 0, 0
    for i, p in enumerate(panels, start=1):
        p = dict(p, id=i)
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if p["type"] == "row" or x + w > 24:
            x, y, row_h = 0, y + row_h, 0
        p["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
        x, row_h = x + w, max(row_h, h)
        if p["type"] == "row":
            x, y, row_h = 0, y + h, 0
        out.append(p)
    return out


# --------------------------------------------------------------------------------------------
# template variables


def _query_variable(name: str, label: str, query: str, *, multi: bool = True) -> dict[str, Any]:
    return {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": _DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,  # on time-range change: new versions appear without a reload
        "includeAll": multi,
        "multi": multi,
        **({"allValue": ".*"} if multi else {}),
        "sort": 1,
        "current": {},
        "options": [],
        "hide": 0,
    }


def _variables(q: _Queries, extra: Sequence[str]) -> list[dict[str, Any]]:
    """Datasource, model, version and window, plus ``extra`` ones (slo, class)."""
    predictions = q.metric("cvmon_predictions_total").name
    out: list[dict[str, Any]] = [
        {
            "name": "datasource",
            "label": "Prometheus",
            "type": "datasource",
            "query": "prometheus",
            "current": {},
            "options": [],
            "hide": 0,
            "refresh": 1,
            "regex": "",
        },
        _query_variable("model", "Model", f"label_values({predictions}, model)"),
        _query_variable(
            "version", "Version", f"label_values({q.sel('cvmon_predictions_total', MODEL)}, version)"
        ),
        _query_variable(
            # Every model has labelled predictions per window; not every model has an accuracy.
            "window",
            "Window",
            f"label_values({q.sel('cvmon_labelled_predictions', MODEL, whole=False)}, window)",
            multi=False,
        ),
    ]
    if "slo" in extra:
        out.append(
            _query_variable("slo", "SLO", f"label_values({q.sel('cvmon_slo_events_total', MODEL)}, slo)")
        )
    if "class" in extra:
        out.append(
            _query_variable(
                "class", "Class", f"label_values({q.sel('cvmon_precision_ratio', MODEL, whole=False)}, class)"
            )
        )
    return out


def _dashboard(
    uid: str,
    title: str,
    description: str,
    panels: Sequence[dict[str, Any]],
    q: _Queries,
    variables: Sequence[str] = (),
    time_from: str = "now-7d",
) -> dict[str, Any]:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["cvmon"],
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": time_from, "to": "now"},
        "refresh": "1m",
        "timezone": "browser",
        "templating": {"list": _variables(q, variables)},
        "annotations": {
            "list": [
                {
                    "name": "Budget-burn alerts",
                    "datasource": _DS,
                    "enable": True,
                    "iconColor": "red",
                    "expr": q.alerts(PAGE, MODEL),
                    "titleFormat": "{{slo}} page",
                    "textFormat": "{{long_window}} / {{short_window}}",
                    "step": "1m",
                },
            ]
        },
        "links": [{"type": "dashboards", "tags": ["cvmon"], "asDropdown": True, "title": "cvmon"}],
        "panels": _layout(panels),
    }


# --------------------------------------------------------------------------------------------
# the three dashboards
#
# Panel lists read as tables (kind, title, description, queries, options); the formatter would
# spread each over a dozen lines.
# fmt: off


def executive(q: _Queries) -> dict[str, Any]:
    """Model quality and SLO health for people who do not carry the pager."""
    # the budget of the version that spent most of it: what the alerts (per version) page on
    budget = f"min by (slo) ({q.sel('cvmon_slo_error_budget_remaining_ratio', MODEL)})"
    panels = [
        row("SLOs"),
        panel("stat", "Error budget left", "Share of each SLO's error budget left over its window, for "
              "the version that spent most of it (1 = untouched, below 0 = overspent).",
              [Target(budget, "{{slo}}")],
              w=16, unit="percentunit", steps=_BUDGET_STEPS,
              options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}),
        panel("stat", "Budget-burn alerts firing",
              "CvmonErrorBudgetBurn alerts firing now, pages and tickets.",
              [Target(f'count by (severity) ({q.alerts(MODEL)}) or on () vector(0)', "{{severity}}")],
              w=8, steps=(("green", None), ("red", 1)),
              options={"reduceOptions": {"calcs": ["lastNotNull"]}, "colorMode": "background"}),
        panel("table", "SLO status",
              "Objective and budget left per SLO (its most spent version); the rules in alerts/ page on "
              "fast burns.",
              [Target(f"max by (slo) ({q.sel('cvmon_slo_objective_ratio', MODEL)})", instant=True, table=True),
               Target(budget, instant=True, table=True)],
              w=24, h=7, unit="percentunit",
              transformations=[{"id": "joinByField", "options": {"byField": "slo", "mode": "outer"}},
                               {"id": "organize", "options": {
                                   "excludeByName": {"Time": True, "Time 1": True, "Time 2": True},
                                   "renameByName": {"Value #A": "objective", "Value #B": "budget left"}}}]),
        row("Model quality"),
        panel("timeseries", "Accuracy", "Top-1 accuracy of labelled predictions, per model and version.",
              [Target(q.sel("cvmon_accuracy_ratio", *MVW), "{{model}} {{version}}")],
              unit="percentunit", hi=1),
        panel("timeseries", "mAP@[.5:.95]", "COCO mean average precision of detection models.",
              [Target(q.sel("cvmon_map_ratio", *MVW, IOU), "{{model}} {{version}}")],
              unit="percentunit", hi=1),
        panel("timeseries", "Estimated accuracy (before labels arrive)",
              "Label-free estimate from calibrated confidences; realised accuracy follows as labels arrive.",
              [Target(q.sel("cvmon_estimated_accuracy_ratio", *MVW), "{{model}} {{version}} estimated"),
               Target(q.sel("cvmon_accuracy_ratio", *MVW), "{{model}} {{version}} realised")],
              unit="percentunit", hi=1),
        panel("timeseries", "Predictions per second", "Traffic per model.",
              [Target(f"sum by (model) (rate({q.sel('cvmon_predictions_total', MODEL)}[$__rate_interval]))",
                      "{{model}}")], unit="reqps"),
        row("Cost and label quality"),
        panel("timeseries", "Cost per 1 000 inferences",
              "Device-hours priced per device class (costs: in cvmon.yaml, in its currency) plus the fixed "
              "cost per 1 000 requests, per model and version. A batch shares its call's device time.",
              [Target(q.sel("cvmon_cost_per_1k_inferences", *MVW), "{{model}} {{version}}")], lo=0),
        panel("timeseries", "Label agreement",
              "How often annotators agree on multiply-annotated predictions, and Krippendorff's alpha "
              "(1 perfect, 0 chance). Quality metrics rest on labels people agree on.",
              [Target(q.sel("cvmon_label_agreement_ratio", *MVW), "{{model}} {{version}} agreement"),
               Target(q.sel("cvmon_label_krippendorff_alpha", *MVW), "{{model}} {{version}} alpha")],
              hi=1),
        row("Incidents"),
        panel("state-timeline", "Budget-burn incidents", "When each SLO's CvmonErrorBudgetBurn alert fired.",
              [Target(f"max by (slo, severity) ({q.alerts(MODEL)})", "{{slo}} {{severity}}")],
              w=24, h=7, steps=(("transparent", None), ("red", 1)),
              options={"mergeValues": True, "showValue": "never"}),
        panel("stat", "Pages in the time range",
              "Distinct page alerts (SLO and windows) that fired in the range.",
              [Target(f'count(max_over_time({q.alerts(MODEL, PAGE)}[$__range])) or on () vector(0)',
                      instant=True)], w=12, h=5, steps=(("green", None), ("red", 1))),
        panel("stat", "Tickets in the time range", "Distinct ticket alerts that fired in the range.",
              [Target(f'count(max_over_time({q.alerts(MODEL, TICKET)}[$__range])) or on () vector(0)',
                      instant=True)], w=12, h=5, steps=(("green", None), ("orange", 1))),
    ]
    return _dashboard("cvmon-executive", "cvmon / executive",
                      "SLO status and error budget left, model quality trend, cost per 1 000 inferences, "
                      "label agreement, incidents.", panels, q,
                      time_from="now-30d")


def oncall(q: _Queries) -> dict[str, Any]:
    """What the person paged needs first: which SLO burns, which version, since when."""
    slo = 'slo=~"$slo"'
    by_version = "sum by (model, version)"

    def rate_of(name: str) -> str:
        return f"rate({q.sel(name, MODEL, VERSION)}[$__rate_interval])"

    panels: list[dict[str, Any]] = [
        row("Error budgets"),
        panel("table", "Firing budget-burn alerts", "CvmonErrorBudgetBurn alerts firing now.",
              [Target(q.alerts(MODEL), instant=True, table=True)], w=24, h=6,
              transformations=[{"id": "organize", "options": {"excludeByName": {
                  "Time": True, "Value": True, "__name__": True, "alertname": True, "alertstate": True}}}]),
        panel("timeseries", "Burn rate", "Error-budget burn rate per SLO, version and window (1 = spending "
              "exactly the budget; the workbook pages at 14.4 over 1h and 6 over 6h).",
              [Target(q.sel("cvmon_slo_burn_rate", slo, MODEL, VERSION), "{{slo}} {{version}} {{window}}")],
              steps=(("green", None), ("orange", 1), ("red", 6)),
              options={"legend": {"displayMode": "table", "placement": "right",
                                  "calcs": ["lastNotNull", "max"]}}),
        panel("timeseries", "Bad-event ratio, 1h",
              "Bad events / events over the last hour, from the counters the alerts use.",
              [Target(f"sum by (slo) (rate({q.sel('cvmon_slo_bad_events_total', slo, MODEL)}[1h])) / "
                      f"sum by (slo) (rate({q.sel('cvmon_slo_events_total', slo, MODEL)}[1h]))", "{{slo}}")],
              unit="percentunit"),
        panel("timeseries", "Error budget left", "Share of the budget left over each SLO's window, per version.",
              [Target(q.sel("cvmon_slo_error_budget_remaining_ratio", slo, MODEL, VERSION), "{{slo}} {{version}}")],
              w=24, h=6, unit="percentunit", steps=_BUDGET_STEPS),
        row("Serving"),
        *[
            panel("timeseries", f"Latency p{label} by version", f"Inference latency, {label}th percentile.",
                  [Target(q.sel("cvmon_inference_latency_seconds", *MVW, f'quantile="{quantile}"'),
                          "{{model}} {{version}}")], w=8, unit="s")
            for quantile, label in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
        ],
        panel("timeseries", "Error rate by version", "Predictions with status error / all predictions.",
              [Target(f"{by_version} ({rate_of('cvmon_inference_errors_total')}) / "
                      f"{by_version} ({rate_of('cvmon_predictions_total')})", "{{model}} {{version}}")],
              unit="percentunit"),
        panel("timeseries", "Throughput by version", "Predictions per second.",
              [Target(f"{by_version} ({rate_of('cvmon_predictions_total')})", "{{model}} {{version}}")],
              unit="reqps"),
        row("Quality of the chosen classes"),
        panel("timeseries", "Precision", "Per-class precision of the classes picked above.",
              [Target(q.sel("cvmon_precision_ratio", *MVW, 'class=~"$class"'), "{{class}} {{version}}")],
              unit="percentunit", hi=1),
        panel("timeseries", "Recall", "Per-class recall of the classes picked above.",
              [Target(q.sel("cvmon_recall_ratio", *MVW, 'class=~"$class"'), "{{class}} {{version}}")],
              unit="percentunit", hi=1),
        panel("bargauge", "Lowest recall now", "The five classes with the lowest recall.",
              [Target(f"bottomk(5, {q.sel('cvmon_recall_ratio', *MVW)})", "{{class}} {{version}}",
                      instant=True)],
              unit="percentunit", lo=0, hi=1, steps=(("red", None), ("orange", 0.8), ("green", 0.9))),
        panel("bargauge", "Lowest precision now", "The five classes with the lowest precision.",
              [Target(f"bottomk(5, {q.sel('cvmon_precision_ratio', *MVW)})", "{{class}} {{version}}",
                      instant=True)],
              unit="percentunit", lo=0, hi=1, steps=(("red", None), ("orange", 0.8), ("green", 0.9))),
        row("Recent drift"),
        panel("timeseries", "Drift score", "Each detector's score against the pinned reference.",
              [Target(q.sel("cvmon_drift_score", *MVW), "{{detector}} {{feature}} {{version}}")]),
        panel("state-timeline", "Drift detected", "1 while a detector flags drift at its alpha.",
              [Target(f"max by (detector, version) ({q.sel('cvmon_drift_detected', *MVW)})",
                      "{{detector}} {{version}}")], steps=(("green", None), ("red", 1)),
              options={"mergeValues": True, "showValue": "never"}),
        row("cvmon itself"),
        panel("timeseries", "Time since each job's last success", "A stale job means stale metrics.",
              [Target(f"time() - {q.sel('cvmon_job_last_success_timestamp_seconds')}", "{{job}} {{model}}")],
              unit="s"),
        panel("timeseries", "Rejected ingest records", "Records the API refused, by kind.",
              [Target("sum by (kind) (rate("
                      f"{q.sel('cvmon_ingest_records_total', REJECTED)}[$__rate_interval]))",
                      "{{kind}}")], unit="reqps"),
    ]
    return _dashboard("cvmon-oncall", "cvmon / on-call",
                      "Burn rates and firing alerts, latency by version, error rate, class quality, drift.",
                      panels, q, variables=("slo", "class"), time_from="now-24h")


def debug(q: _Queries) -> dict[str, Any]:
    """Where a model goes wrong: which classes, which confidences, which cohort, which labels."""
    panels: list[dict[str, Any]] = [
        row("Errors and calibration"),
        panel("table", "Confusion matrix (rows true, columns predicted)", "Counts in the window, summed over "
              "the chosen versions.",
              [Target(f"sum by (true_class, predicted_class) "
                      f"({q.sel('cvmon_confusion_matrix_predictions', *MVW)})", instant=True, table=True)],
              w=14, h=12,
              transformations=[{"id": "groupingToMatrix", "options": {
                  "columnField": "predicted_class", "rowField": "true_class", "valueField": "Value"}}]),
        panel("barchart", "Reliability diagram", "Per confidence bin (upper edge): accuracy against mean "
              "confidence. A calibrated model has equal bars.",
              [Target(f"avg by (bin) ({q.sel(name, *MVW)})", instant=True, table=True)
               for name in ("cvmon_reliability_accuracy_ratio", "cvmon_reliability_confidence_ratio")],
              w=10, h=12, unit="percentunit", lo=0, hi=1,
              options={"xField": "bin", "legend": {"showLegend": True}},
              transformations=[{"id": "joinByField", "options": {"byField": "bin", "mode": "outer"}},
                               {"id": "organize", "options": {
                                   "excludeByName": {"Time": True, "Time 1": True, "Time 2": True},
                                   "renameByName": {"Value #A": "accuracy", "Value #B": "confidence"}}}]),
        panel("timeseries", "Expected calibration error", "Top-label ECE, 15 equal-width bins.",
              [Target(q.sel("cvmon_ece_ratio", *MVW), "{{model}} {{version}}")], unit="percentunit"),
        panel("table", "Per-class precision, recall, F1", "One row per class in the window.",
              [Target(q.sel(name, *MVW), instant=True, table=True)
               for name in ("cvmon_precision_ratio", "cvmon_recall_ratio", "cvmon_f1_ratio")],
              unit="percentunit",
              transformations=[{"id": "joinByField", "options": {"byField": "class", "mode": "outer"}},
                               {"id": "filterFieldsByName",
                                "options": {"include": {"pattern": "class|Value.*"}}},
                               {"id": "organize", "options": {"renameByName": {
                                   "Value #A": "precision", "Value #B": "recall", "Value #C": "F1"}}}]),
        panel("bargauge", "Per-class AP@[.5:.95]", "COCO average precision per class (detection).",
              [Target(f"sort({q.sel('cvmon_ap_ratio', *MVW, IOU)})", "{{class}}", instant=True)],
              unit="percentunit", lo=0, hi=1),
    ]
    for key in q.cohort_keys:
        cohort = f'{key}!=""'
        panels += [
            row(f"By {key}"),
            panel("timeseries", f"Accuracy by {key}", f"Top-1 accuracy per {key}.",
                  [Target(q.sel("cvmon_accuracy_ratio", *MVW, cohort, whole=False), f"{{{{{key}}}}}")],
                  w=8, unit="percentunit", hi=1),
            panel("timeseries", f"mAP@[.5:.95] by {key}", f"Detection mAP per {key}.",
                  [Target(q.sel("cvmon_map_ratio", *MVW, IOU, cohort, whole=False), f"{{{{{key}}}}}")],
                  w=8, unit="percentunit", hi=1),
            panel("timeseries", f"Latency p95 by {key}", f"Inference latency, 95th percentile, per {key}.",
                  [Target(q.sel("cvmon_inference_latency_seconds", *MVW, 'quantile="0.95"', cohort,
                                whole=False),
                          f"{{{{{key}}}}}")], w=8, unit="s"),
            panel("timeseries", f"Label coverage by {key}", f"Labelled / predicted per {key}.",
                  [Target(q.sel("cvmon_label_coverage_ratio", *MVW, cohort, whole=False), f"{{{{{key}}}}}")],
                  w=8, unit="percentunit", hi=1),
            panel("timeseries", f"Multiply-annotated coverage by {key}",
                  f"Predictions with two or more annotators / predictions, per {key}: a {key} missing from "
                  "the agreement sample has label quality nobody measures.",
                  [Target(q.sel("cvmon_label_multi_annotated_coverage_ratio", *MVW, cohort, whole=False),
                          f"{{{{{key}}}}}")],
                  w=8, unit="percentunit", hi=1),
            panel("timeseries", f"Drift score by {key}", f"Drift detector scores per {key}.",
                  [Target(q.sel("cvmon_drift_score", *MVW, cohort, whole=False),
                          f"{{{{{key}}}}} {{{{detector}}}}")],
                  w=8),
        ]
    panels += [
        row("Labels"),
        panel("timeseries", "Label coverage", "Labelled predictions / predictions in the window.",
              [Target(q.sel("cvmon_label_coverage_ratio", *MVW), "{{model}} {{version}}")], w=8,
              unit="percentunit", hi=1),
        panel("timeseries", "Labelled predictions", "How many labels the quality metrics rest on.",
              [Target(q.sel("cvmon_labelled_predictions", *MVW), "{{model}} {{version}}")], w=8),
        panel("timeseries", "Label latency p50 / p95", "Ground-truth time minus prediction time.",
              [Target(q.sel("cvmon_label_latency_seconds", *MVW), "{{version}} p{{quantile}}")],
              w=8, unit="s"),
        panel("timeseries", "Ground truth received", "Ground-truth records per second.",
              [Target(f"sum by (model, version) (rate({q.sel('cvmon_ground_truth_total', MODEL, VERSION)}"
                      "[$__rate_interval]))", "{{model}} {{version}}")], w=12, unit="reqps"),
        panel("timeseries", "Drift p-values",
              "Low p-values mean the current window differs from the reference.",
              [Target(q.sel("cvmon_drift_p_value", *MVW), "{{detector}} {{feature}}")], w=12, lo=0, hi=1),
    ]
    return _dashboard("cvmon-debug", "cvmon / debug",
                      "Confusion matrix, reliability diagram, per-cohort breakdown, label coverage and "
                      "latency.",
                      panels, q, variables=(), time_from="now-7d")


# fmt: on


# --------------------------------------------------------------------------------------------
# the files


def build_dashboards(
    metrics: Mapping[str, MetricName] = METRIC, cohort_keys: Sequence[str] = DEFAULT_COHORT_KEYS
) -> dict[str, dict[str, Any]]:
    """File name -> dashboard JSON model. Raises :class:`UnknownMetric` when a query needs a
    metric or label that ``metrics`` (the names table) lacks."""
    q = _Queries(metrics, cohort_keys)
    return {f"{d['uid']}.json": d for d in (executive(q), oncall(q), debug(q))}


def dashboard_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query of a dashboard: panel targets, annotations, and the
    selectors inside the template variables' ``label_values(...)``."""
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            yield f"{dashboard['uid']} / {p['title']} / {t['refId']}", t["expr"]
    for a in dashboard["annotations"]["list"]:
        yield f"{dashboard['uid']} / annotation {a['name']}", a["expr"]
    for v in dashboard["templating"]["list"]:
        if v["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\)", v["definition"])
            if inner is None:
                raise ValueError(f"unexpected variable query {v['definition']!r}")
            yield f"{dashboard['uid']} / variable {v['name']}", inner.group(1)


DATASOURCE_PROVISIONING: Final = """\
# Generated by `cvmon grafana render`. Mount grafana/provisioning at /etc/grafana/provisioning.
# Point url at the Prometheus that scrapes cvmon's /metrics and loads alerts/*.rules.yml.
apiVersion: 1
datasources:
  - name: Prometheus (cvmon)
    uid: cvmon-prometheus
    type: prometheus
    access: proxy
    url: http://localhost:9090
    isDefault: true
    jsonData:
      timeInterval: 30s   # the scrape interval; $__rate_interval is at least 4 of these
"""

DASHBOARD_PROVISIONING: Final = """\
# Generated by `cvmon grafana render`. Mount grafana/dashboards at /var/lib/grafana/dashboards/cvmon.
apiVersion: 1
providers:
  - name: cvmon
    folder: cvmon
    type: file
    disableDeletion: false
    allowUiUpdates: false   # dashboards are generated: change monitor/server/exporters/grafana.py
    updateIntervalSeconds: 60
    options:
      path: /var/lib/grafana/dashboards/cvmon
"""


def render_files(
    metrics: Mapping[str, MetricName] = METRIC, cohort_keys: Sequence[str] = DEFAULT_COHORT_KEYS
) -> dict[str, str]:
    """Relative path -> text of every file under grafana/ (deterministic)."""
    files = {
        f"{DASHBOARD_DIR}/{name}": json.dumps(board, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
        for name, board in build_dashboards(metrics, cohort_keys).items()
    }
    files["provisioning/datasources/cvmon.yaml"] = DATASOURCE_PROVISIONING
    files["provisioning/dashboards/cvmon.yaml"] = DASHBOARD_PROVISIONING
    return files


def write_files(out_dir: Path, cohort_keys: Sequence[str] = DEFAULT_COHORT_KEYS) -> list[Path]:
    """Write :func:`render_files` under ``out_dir`` and return the paths written."""
    written = []
    for rel, text in render_files(cohort_keys=cohort_keys).items():
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
