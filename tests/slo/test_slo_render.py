"""The rendered Prometheus rules: current in alerts/, valid for promtool, built only on the two counters."""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from monitor.server.cli._root import cli
from monitor.server.exporters.promql import referenced_series
from monitor.server.names import EXPORTED_SERIES
from monitor.server.slo.burnrate import format_duration, required_windows
from monitor.server.slo.render import (
    ALERT_NAME,
    BAD_EVENTS_COUNTER,
    EVENTS_COUNTER,
    GENERATED_MARK,
    PROMETHEUS_EXAMPLE,
    prometheus_example,
    recording_rule_names,
    recording_rules,
    render_all,
    write_rules,
)
from monitor.server.slo.spec import SLO, load_slos
from tests.slo.golden import REPO, assert_current

ALERTS = REPO / "alerts"


def _rules(slos: tuple[SLO, ...]) -> list[dict]:
    return [
        rule
        for text in render_all(slos).values()
        for g in yaml.safe_load(text)["groups"]
        for rule in g["rules"]
    ]


def test_committed_rules_are_rendered_from_the_example(example_slos: tuple[SLO, ...]) -> None:
    assert_current(ALERTS, render_all(example_slos), pattern="*.rules.yml")
    assert_current(ALERTS, {PROMETHEUS_EXAMPLE: prometheus_example()})


def test_the_prometheus_example_scrapes_with_a_metrics_key_and_passes_promtool(tmp_path: Path, promtool: str) -> None:
    config = yaml.safe_load(prometheus_example())
    (job,) = config["scrape_configs"]
    assert job["authorization"] == {"credentials_file": "/etc/prometheus/cvmon.key"}
    assert "--scopes metrics" in prometheus_example()
    # promtool checks the file, its rule files and that the key file exists
    key = tmp_path / "cvmon.key"
    key.write_text("cvm_000000000000_" + "x" * 43)
    job["authorization"]["credentials_file"] = str(key)
    for rules in ALERTS.glob("*.rules.yml"):
        (tmp_path / rules.name).write_text(rules.read_text("utf-8"))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    proc = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(list(ALERTS.glob('*.rules.yml')))} rule files found" in proc.stdout


def test_promtool_accepts_the_committed_rules(promtool: str) -> None:
    files = sorted(str(p) for p in ALERTS.glob("*.rules.yml"))
    assert files
    proc = subprocess.run(
        [promtool, "check", "rules", *files], check=False, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_read_only_the_two_counters(example_slos: tuple[SLO, ...]) -> None:
    recorded = recording_rule_names(example_slos)
    for rule in _rules(example_slos):
        names = referenced_series(rule["expr"])
        if "record" in rule:
            assert rule["record"] in recorded
            assert names <= {EVENTS_COUNTER, BAD_EVENTS_COUNTER}, rule
        else:
            assert names <= recorded, rule
    assert {EVENTS_COUNTER, BAD_EVENTS_COUNTER} <= EXPORTED_SERIES


def test_long_windows_are_increase_totals_not_averaged_ratios(example_slos: tuple[SLO, ...]) -> None:
    for rule in _rules(example_slos):
        assert "_over_time" not in rule["expr"] and "avg" not in rule["expr"]
    for slo in example_slos:
        for rule in recording_rules(slo):
            grouping = "slo, model, version" if slo.per_version else "slo, model"
            assert rule["expr"].startswith(f"sum by ({grouping}) (increase("), rule


def test_each_slo_gets_every_window_it_needs_and_its_alerts(example_slos: tuple[SLO, ...]) -> None:
    for slo in example_slos:
        (group,) = yaml.safe_load(render_all([slo])[f"{slo.name}.rules.yml"])["groups"]
        records = [r for r in group["rules"] if "record" in r]
        alerts = [r for r in group["rules"] if "alert" in r]
        assert len(records) == 2 * len(required_windows(slo.alerts))
        assert len(alerts) == len(slo.alerts)
        for rule, alert in zip(alerts, slo.alerts, strict=True):
            assert rule["alert"] == ALERT_NAME
            assert rule["labels"] == {
                "slo": slo.name,
                "model": slo.model,
                "severity": alert.severity,
                "long_window": alert.long_window,
                "short_window": alert.short_window,
            }
            assert set(rule["annotations"]) == {"summary", "description", "runbook"}
            level = "slo_model_version" if slo.per_version else "slo_model"
            assert (f"and\n(\n  {level}:cvmon_slo_events" in rule["expr"]) == (alert.min_events > 0)
            # hysteresis: kept firing for the short window, as the notifier does
            assert rule["keep_firing_for"] == alert.short_window == format_duration(alert.keep_firing_for)


def test_the_fast_page_expression_reads_as_the_workbook(example_slos: tuple[SLO, ...]) -> None:
    slo = next(s for s in example_slos if s.name == "digits-latency")
    page = next(r for r in _rules((slo,)) if r.get("labels", {}).get("long_window") == "1h")
    assert page["expr"] == textwrap.dedent(
        """\
        (
          slo_model_version:cvmon_slo_bad_events:increase1h{slo="digits-latency"}
            / slo_model_version:cvmon_slo_events:increase1h{slo="digits-latency"}
            / 0.01 > 14.4
        )
        and
        (
          slo_model_version:cvmon_slo_bad_events:increase5m{slo="digits-latency"}
            / slo_model_version:cvmon_slo_events:increase5m{slo="digits-latency"}
            / 0.01 > 14.4
        )
        and
        (
          slo_model_version:cvmon_slo_events:increase1h{slo="digits-latency"} >= 35
        )
        """
    )


def test_rendering_is_deterministic(example_slos: tuple[SLO, ...]) -> None:
    assert render_all(example_slos) == render_all(
        load_slos((REPO / "examples/cvmon.yaml").read_text("utf-8"))
    )


def test_write_rules_removes_only_its_own_stale_files(tmp_path: Path, example_slos: tuple[SLO, ...]) -> None:
    mine = tmp_path / "gone-slo.rules.yml"
    mine.write_text(f"{GENERATED_MARK}: do not edit.\ngroups: []\n")
    theirs = tmp_path / "hand-written.rules.yml"
    theirs.write_text("groups: []\n")
    result = write_rules(example_slos[:2], tmp_path)
    assert [p.name for p in result.written] == ["digits-latency.rules.yml", "digits-availability.rules.yml"]
    assert result.removed == (mine,)
    assert theirs.exists() and not mine.exists()


# --------------------------------------------------------------------------------------------
# the command line


def test_cli_render_writes_and_checks(tmp_path: Path, promtool: str) -> None:
    out = tmp_path / "alerts"
    result = CliRunner().invoke(
        cli, ["slo", "render", "--config", str(REPO / "examples/cvmon.yaml"), "--out", str(out), "--check"]
    )
    assert result.exit_code == 0, result.output
    assert "promtool check rules: ok" in result.output
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in ALERTS.glob("*.yml"))


def test_cli_render_reports_the_line_of_a_bad_slo(tmp_path: Path) -> None:
    config = tmp_path / "cvmon.yaml"
    config.write_text(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 1.5\n    window: 30d\n"
    )
    result = CliRunner().invoke(cli, ["slo", "render", "--config", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert f"{config}:5: objective must be a fraction strictly between 0 and 1" in result.output
    assert not (tmp_path / "o").exists()


def test_cli_render_without_a_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["slo", "render", "--config", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "cannot read" in result.output


def test_cli_check_explains_each_alert() -> None:
    result = CliRunner().invoke(cli, ["slo", "check", "--config", str(REPO / "examples/cvmon.yaml")])
    assert result.exit_code == 0, result.output
    assert "digits-latency: digits, latency <= 0.05, 0.99 over 30d" in result.output
    assert "pages only with >= 35 events in 1h" in result.output
    assert "digits-cost: digits, cost <= 0.005, 0.95 over 30d" in result.output
    assert "digits-label-quality: digits, label_quality krippendorff_alpha >= 0.667, 0.9 over 30d" in result.output
    assert result.output.rstrip().endswith("15 SLOs ok")


@pytest.mark.parametrize("args", [["slo", "--help"], ["slo", "render", "--help"], ["slo", "check", "--help"]])
def test_help(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0 and "Usage:" in result.output
