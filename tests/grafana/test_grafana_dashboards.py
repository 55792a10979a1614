"""Grafana dashboards: current in grafana/, every query valid PromQL (promtool) reading only exported names."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from monitor.server.cli._root import cli
from monitor.server.exporters.grafana import (
    PROMETHEUS_SERIES,
    UnknownMetric,
    build_dashboards,
    dashboard_queries,
    render_files,
)
from monitor.server.exporters.promql import expand_variables, referenced_series
from monitor.server.names import EXPORTED_SERIES, METRIC, MetricName
from monitor.server.slo.render import recording_rule_names
from monitor.server.slo.spec import load_slos
from tests.slo.golden import REPO, assert_current, require_promtool

GRAFANA = REPO / "grafana"
DASHBOARDS = build_dashboards()
QUERIES = [(where, expr) for board in DASHBOARDS.values() for where, expr in dashboard_queries(board)]
#: Names a dashboard may read: the names table, the rules cvmon renders, Prometheus' ALERTS.
ALLOWED = (
    EXPORTED_SERIES
    | recording_rule_names(load_slos((REPO / "examples/cvmon.yaml").read_text("utf-8")))
    | set(PROMETHEUS_SERIES)
)


def unknown_series(queries: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, set[str]]:
    """Where -> series names a query reads that are not ``allowed``."""
    allowed = set(allowed)
    out = {}
    for where, expr in queries:
        unknown = set(referenced_series(expr)) - allowed
        if unknown:
            out[where] = unknown
    return out


def test_committed_files_are_generated_from_the_names_table() -> None:
    assert_current(GRAFANA, render_files(), pattern="**/*.json")


def test_three_dashboards() -> None:
    assert sorted(DASHBOARDS) == ["cvmon-debug.json", "cvmon-executive.json", "cvmon-oncall.json"]


def test_every_query_reads_only_exported_names() -> None:
    assert len(QUERIES) > 50
    assert unknown_series(QUERIES, ALLOWED) == {}


def test_the_name_check_catches_an_unknown_name() -> None:
    bad = [("x / y / A", 'rate(cvmon_predictions_total[5m]) / cvmon_predicitons_total{model="m"}')]
    assert unknown_series(bad, ALLOWED) == {"x / y / A": {"cvmon_predicitons_total"}}


def test_alerts_series_only_for_cvmon_alerts() -> None:
    for where, expr in QUERIES:
        if "ALERTS" in referenced_series(expr):
            assert PROMETHEUS_SERIES["ALERTS"] in expr, where


def test_every_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool has no 'check expression': each query becomes a recording rule it parses."""
    promtool = require_promtool()
    rules = [
        {"record": f"cvmon_dashboard_query_{i}", "expr": expand_variables(expr)}
        for i, (_, expr) in enumerate(QUERIES)
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}, width=10_000))
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


def test_promtool_check_catches_a_broken_query(tmp_path: Path) -> None:
    promtool = require_promtool()
    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [{"record": "x", "expr": "sum by (model (cvmon_predictions_total)"}],
                    }
                ]
            }
        )
    )
    proc = subprocess.run(
        [promtool, "check", "rules", str(path)], check=False, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0


def _used_metric_names() -> list[str]:
    used = set()
    for _, expr in QUERIES:
        used |= {n for n in referenced_series(expr) if n in METRIC}
    return sorted(used)


@pytest.mark.parametrize("name", _used_metric_names())
def test_renaming_a_metric_in_the_table_breaks_generation(name: str) -> None:
    metric = METRIC[name]
    renamed: Mapping[str, MetricName] = {
        (f"{name}_renamed" if k == name else k): (
            MetricName(f"{name}_renamed", m.kind, m.help, m.labels, m.cohort_labels) if k == name else m
        )
        for k, m in METRIC.items()
    }
    assert metric.name in EXPORTED_SERIES
    with pytest.raises(UnknownMetric, match=name):
        build_dashboards(metrics=renamed)


def test_dropping_a_label_from_the_table_breaks_generation() -> None:
    metric = METRIC["cvmon_inference_latency_seconds"]
    changed = dict(METRIC)
    changed[metric.name] = MetricName(
        metric.name,
        metric.kind,
        metric.help,
        tuple(lb for lb in metric.labels if lb != "quantile"),
        metric.cohort_labels,
    )
    with pytest.raises(UnknownMetric, match="no label 'quantile'"):
        build_dashboards(metrics=changed)


def test_variables_and_datasource() -> None:
    for board in DASHBOARDS.values():
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[:4] == ["datasource", "model", "version", "window"]
        for p in board["panels"]:
            if p["type"] != "row":
                assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
                assert all(t["datasource"]["uid"] == "${datasource}" for t in p["targets"])
        # Every variable a query uses is one this dashboard defines, or one of Grafana's own.
        defined = {name: "x" for name in names} | {"__rate_interval": "5m", "__range": "1d"}
        for _, expr in dashboard_queries(board):
            expand_variables(expr, defined)


def test_layout_is_a_grid_of_unique_panels() -> None:
    for board in DASHBOARDS.values():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for p in board["panels"]:
            pos = p["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24


def test_the_three_dashboards_cover_the_issue() -> None:
    titles = {uid: {p["title"] for p in b["panels"]} for uid, b in DASHBOARDS.items()}
    assert {"Error budget left", "Accuracy", "mAP@[.5:.95]", "Budget-burn incidents", "SLO status",
            "Cost per 1 000 inferences", "Label agreement"} <= titles["cvmon-executive.json"]  # fmt: skip
    assert {
        "Latency p50 by version",
        "Latency p95 by version",
        "Latency p99 by version",
        "Error rate by version",
        "Precision",
        "Recall",
        "Burn rate",
        "Drift score",
    } <= titles["cvmon-oncall.json"]
    assert {
        "Confusion matrix (rows true, columns predicted)",
        "Reliability diagram",
        "Accuracy by camera",
        "Multiply-annotated coverage by camera",
        "Label coverage",
        "Label latency p50 / p95",
    } <= titles["cvmon-debug.json"]


def test_cohort_keys_drive_the_breakdown() -> None:
    boards = build_dashboards(cohort_keys=("camera", "store"))
    titles = {p["title"] for p in boards["cvmon-debug.json"]["panels"]}
    assert {"Accuracy by camera", "Accuracy by store"} <= titles
    accuracy = next(p for p in boards["cvmon-executive.json"]["panels"] if p["title"] == "Accuracy")
    assert 'camera="",store=""' in accuracy["targets"][0]["expr"]


def test_provisioning_files() -> None:
    datasources = yaml.safe_load((GRAFANA / "provisioning/datasources/cvmon.yaml").read_text())
    assert datasources["apiVersion"] == 1 and datasources["datasources"][0]["type"] == "prometheus"
    dashboards = yaml.safe_load((GRAFANA / "provisioning/dashboards/cvmon.yaml").read_text())
    assert dashboards["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/cvmon"
    for name in DASHBOARDS:
        assert json.loads((GRAFANA / "dashboards" / name).read_text())["uid"] == name.removesuffix(".json")


def test_cli_render(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["grafana", "render", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file()) == sorted(
        render_files()
    )
    assert CliRunner().invoke(cli, ["grafana", "render", "--help"]).exit_code == 0


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        pytest.param(
            'sum by (slo, model) (increase(a_total{slo="x"}[1h]))', {"a_total"}, id="aggregation-by"
        ),
        pytest.param("sum(x) by (le) / on (job) group_left(model) y", {"x", "y"}, id="grouping-modifiers"),
        pytest.param("time() - a offset 5m", {"a"}, id="function-and-offset"),
        pytest.param('b{s="and or unless"} > 1e3 and c # d', {"b", "c"}, id="strings-numbers-comments"),
        pytest.param("slo_model:a:increase1h / 0.01 > 14.4", {"slo_model:a:increase1h"}, id="recording-rule"),
        pytest.param("max_over_time(a[1d:5m])", {"a"}, id="subquery"),
    ],
)
def test_referenced_series(expr: str, names: set[str]) -> None:
    assert referenced_series(expr) == names


def test_referenced_series_refuses_name_matchers() -> None:
    with pytest.raises(ValueError, match="__name__"):
        referenced_series('{__name__="cvmon_x"}')


def test_unknown_grafana_variable_is_an_error() -> None:
    with pytest.raises(KeyError, match="datasourse"):
        expand_variables('a{model=~"$datasourse"}')
