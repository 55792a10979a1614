"""promtool unit tests of the rendered rules (alerts/tests/*.yml) and the guard's counter-test.

What they prove, for digits-latency (99 % over 30 days):

* a 20x burn pages within the workbook's detection time: the 1h/5m page is quiet 43 minutes into
  the burn and fires at 44 (detection time 0.02 x 30d / 20 = 43.2 min); the 6h/30m page at 109
  (108 min);
* a 0.5x burn never alerts;
* a 2x burn opens the 3d/6h ticket and never pages;
* an SLO with too few events (6 an hour, every one bad) does not page -- and the same input does
  page once the guard is removed, so it is the guard that holds it;
* long windows divide totals: an hour with one busy bad burst pages although an average of 5m
  ratios would not.

and for digits-recall-7 (95 % over 7 days) that the scaled 84m/7m page detects a 10x burn at its
detection time (0.05 x 7d / 10 = 50.4 min); for digits-cost (a time slice: one event per evaluated
hour) that hours over the bound open its default tickets and that it never pages.
"""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from monitor.server.slo.render import render_rules, rules_file_name
from monitor.server.slo.spec import SLO
from tests.slo.golden import REPO, assert_current
from tests.slo.promtool_cases import (
    COST_SLO_NAME,
    SCALED_SLO_NAME,
    SLO_NAME,
    Scenario,
    cost_overrun_scenario,
    firing_at,
    render_test_file,
    scaled_window_scenario,
    scenarios,
)

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

TESTS_DIR = REPO / "alerts" / "tests"
STEMS = [
    "burn-20x-pages",
    "burn-0.5x-never-alerts",
    "burn-2x-tickets-no-page",
    "sparse-events-no-page",
    "uneven-traffic-uses-totals",
    "window-7d-burn-10x-pages",
    "cost-overrun-tickets-no-page",
]


@pytest.fixture(scope="module")
def slo(example_slos: tuple[SLO, ...]) -> SLO:
    return next(s for s in example_slos if s.name == SLO_NAME)


def _files(slo: SLO, scaled: SLO, cost: SLO) -> dict[str, str]:
    files = {
        f"{sc.stem}.yml": render_test_file(slo, sc, f"../{rules_file_name(slo)}") for sc in scenarios(slo)
    }
    sc = scaled_window_scenario(scaled)
    files[f"{sc.stem}.yml"] = render_test_file(scaled, sc, f"../{rules_file_name(scaled)}")
    sc = cost_overrun_scenario(cost)
    files[f"{sc.stem}.yml"] = render_test_file(cost, sc, f"../{rules_file_name(cost)}")
    return files


def test_committed_promtool_tests_are_current(slo: SLO, example_slos: tuple[SLO, ...]) -> None:
    scaled = next(s for s in example_slos if s.name == SCALED_SLO_NAME)
    cost = next(s for s in example_slos if s.name == COST_SLO_NAME)
    files = _files(slo, scaled, cost)
    assert sorted(files) == sorted(f"{s}.yml" for s in STEMS)
    assert_current(TESTS_DIR, files, pattern="*.yml")


def _promtool_test(promtool: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, "test", "rules", str(path)], check=False, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("stem", STEMS)
def test_promtool(promtool: str, stem: str) -> None:
    proc = _promtool_test(promtool, TESTS_DIR / f"{stem}.yml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_the_20x_page_fires_at_the_detection_time_not_before(slo: SLO) -> None:
    burn = next(s for s in scenarios(slo) if s.stem == "burn-20x-pages")
    fast_page = slo.alerts[0]
    fired = [c.minute for c in burn.checks if fast_page in c.firing]
    quiet = [c.minute for c in burn.checks if fast_page not in c.firing]
    start = 6 * 60  # the healthy history
    assert min(fired) - start == 44 and max(quiet) - start == 43


def test_without_the_guard_the_sparse_slo_pages(tmp_path: Path, promtool: str, slo: SLO) -> None:
    unguarded = dataclasses.replace(
        slo, alerts=tuple(dataclasses.replace(a, min_events=0) for a in slo.alerts)
    )
    sparse = next(s for s in scenarios(slo) if s.stem == "sparse-events-no-page")
    checks = tuple(
        dataclasses.replace(c, firing=firing_at(unguarded, sparse, c.minute)) for c in sparse.checks
    )
    assert any(a.severity == "page" for c in checks for a in c.firing), (
        "without the guard the input must page"
    )
    (tmp_path / "rules.yml").write_text(render_rules(unguarded))
    test = tmp_path / "test.yml"
    test.write_text(render_test_file(unguarded, dataclasses.replace(sparse, checks=checks), "rules.yml"))
    proc = _promtool_test(promtool, test)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_fails_when_the_expectation_is_wrong(tmp_path: Path, promtool: str, slo: SLO) -> None:
    """The harness can fail: expecting no page where the rules page is reported by promtool."""
    burn = next(s for s in scenarios(slo) if s.stem == "burn-20x-pages")
    wrong = dataclasses.replace(burn, checks=tuple(dataclasses.replace(c, firing=()) for c in burn.checks))
    (tmp_path / "rules.yml").write_text(render_rules(slo))
    test = tmp_path / "test.yml"
    test.write_text(render_test_file(slo, wrong, "rules.yml"))
    proc = _promtool_test(promtool, test)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_scenarios_split_traffic_over_two_versions(slo: SLO) -> None:
    for sc in scenarios(slo):
        assert isinstance(sc, Scenario) and set(sc.events) == {"v1", "v2"}
