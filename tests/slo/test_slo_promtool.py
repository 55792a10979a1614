"""promtool unit tests of the rendered rules (alerts/tests/*.yml) and their counter-tests.

What they prove (the expectations come from the built-in notifier's own decision, minute by
minute: ``evaluate_alerts`` per version and ``hold``):

* per SLO window (1d, 7d, 28d, 30d): a 20x burn on one version pages that version within the
  workbook's detection time (budget fraction x SLO window / burn), not a minute before, and a
  0.5x burn never alerts;
* a 2x burn opens the 3d/6h ticket for each version and never pages;
* the low-event guard holds per version: a version with 6 events an hour, every one bad, does not
  page beside a busy healthy one -- and the same input does page once the guard is removed;
* long windows divide totals: an hour with one busy bad burst pages although an average of 5m
  ratios would not;
* a canary burning at 40x pages on its own counts beside a version with 10x its traffic -- and
  the same input never pages with ``per_version: false`` (rules summed over versions);
* a burn oscillating around the factor keeps one page firing and resolves once, ``keep_firing_for``
  after the burn -- and the same input flaps with rules without ``keep_firing_for``;
* on a 7-day SLO the scaled 84m/7m page detects a 10x burn at its detection time (50.4 min);
* a cost SLO (a time slice: one event per evaluated hour) opens its default tickets on hours over
  the bound and never pages.
"""

from __future__ import annotations

import dataclasses
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from monitor.server.slo.burnrate import MINUTE
from monitor.server.slo.render import render_rules, rules_file_name
from monitor.server.slo.spec import SLO
from tests.slo.golden import REPO, assert_current
from tests.slo.promtool_cases import (
    SLO_NAME,
    WINDOW_SLOS,
    Scenario,
    all_scenarios,
    conditions,
    render_test_file,
    timeline,
)

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

TESTS_DIR = REPO / "alerts" / "tests"
STEMS = [
    *(f"window-{w}-burn-{b}" for w in WINDOW_SLOS for b in ("20x-pages", "0.5x-silent")),
    "burn-2x-tickets-no-page",
    "sparse-events-no-page",
    "uneven-traffic-uses-totals",
    "canary-40x-pages-per-version",
    "oscillating-burn-does-not-flap",
    "window-7d-burn-10x-pages",
    "cost-overrun-tickets-no-page",
]


@pytest.fixture(scope="module")
def slos(example_slos: tuple[SLO, ...]) -> dict[str, SLO]:
    return {s.name: s for s in example_slos}


@pytest.fixture(scope="module")
def scenarios(example_slos: tuple[SLO, ...]) -> dict[str, Scenario]:
    return {sc.stem: sc for sc in all_scenarios(example_slos)}


def test_committed_promtool_tests_are_current(slos: dict[str, SLO], scenarios: dict[str, Scenario]) -> None:
    files = {
        f"{sc.stem}.yml": render_test_file(slos[sc.slo], sc, f"../{rules_file_name(slos[sc.slo])}")
        for sc in scenarios.values()
    }
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


def _run_variant(tmp_path: Path, promtool: str, slo: SLO, scenario: Scenario) -> subprocess.CompletedProcess[str]:
    """promtool on ``scenario`` against ``slo`` rendered as it is (expectations recomputed for it)."""
    fired = timeline(slo, scenario)
    checks = tuple(
        dataclasses.replace(c, firing=tuple(sorted(fired[c.minute], key=lambda f: (f[0], f[1].long_window_s))))
        for c in scenario.checks
    )
    (tmp_path / "rules.yml").write_text(render_rules(slo))
    test = tmp_path / "test.yml"
    test.write_text(render_test_file(slo, dataclasses.replace(scenario, checks=checks), "rules.yml"))
    return _promtool_test(promtool, test)


def test_the_20x_page_fires_at_the_detection_time_not_before(slos: dict[str, SLO], scenarios: dict[str, Scenario]) -> None:
    burn = scenarios["window-30d-burn-20x-pages"]
    fast_page = slos[SLO_NAME].alerts[0]
    fired = [c.minute for c in burn.checks if ("v2", fast_page) in c.firing]
    quiet = [c.minute for c in burn.checks if ("v2", fast_page) not in c.firing]
    start = 6 * 60  # the healthy history
    assert min(fired) - start == 44 and max(quiet) - start == 43


@pytest.mark.parametrize(
    ("window", "page_minutes"),
    [
        # (long/short, minutes into a 20x burn it fires): detection = budget fraction x window / 20
        pytest.param("1d", {"10m/5m": 8, "12m/5m": 4}, id="1d"),  # 0.1 x 1d / 20 = 7.2; 0.05 x 1d / 20 = 3.6
        pytest.param("7d", {"14m/5m": 11, "84m/7m": 26}, id="7d"),  # 10.08; 25.2
        pytest.param("28d", {"56m/5m": 41, "336m/28m": 101}, id="28d"),  # 40.32; 100.8
        pytest.param("30d", {"1h/5m": 44, "6h/30m": 109}, id="30d"),  # 43.2; 108
    ],
)
def test_each_slo_window_pages_a_20x_burn_at_its_detection_time(
    slos: dict[str, SLO], scenarios: dict[str, Scenario], window: str, page_minutes: dict[str, int]
) -> None:
    slo = slos[WINDOW_SLOS[window]]
    burn = scenarios[f"window-{window}-burn-20x-pages"]
    history = burn.checks[0].minute
    got = {}
    for alert in (a for a in slo.alerts if a.severity == "page"):
        got[f"{alert.long_window}/{alert.short_window}"] = min(
            c.minute - history for c in burn.checks if ("v2", alert) in c.firing
        )
    assert got == page_minutes


def test_without_the_guard_the_sparse_version_pages(
    tmp_path: Path, promtool: str, slos: dict[str, SLO], scenarios: dict[str, Scenario]
) -> None:
    slo = slos[SLO_NAME]
    unguarded = dataclasses.replace(slo, alerts=tuple(dataclasses.replace(a, min_events=0) for a in slo.alerts))
    sparse = scenarios["sparse-events-no-page"]
    assert any(a.severity == "page" for c in sparse.checks for _, a in timeline(unguarded, sparse)[c.minute]), (
        "without the guard the input must page"
    )
    proc = _run_variant(tmp_path, promtool, unguarded, sparse)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_summed_over_versions_the_canary_never_pages(
    tmp_path: Path, promtool: str, slos: dict[str, SLO], scenarios: dict[str, Scenario]
) -> None:
    summed = dataclasses.replace(slos[SLO_NAME], per_version=False)
    canary = scenarios["canary-40x-pages-per-version"]
    fired = timeline(summed, canary)
    assert not any(a.severity == "page" for minute in fired for _, a in minute)
    assert all(version == "" for minute in fired for version, _ in minute)
    proc = _run_variant(tmp_path, promtool, summed, canary)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "sum by (slo, model) (increase(" in render_rules(summed)


def test_without_keep_firing_for_the_oscillating_burn_flaps(
    tmp_path: Path, promtool: str, slos: dict[str, SLO], scenarios: dict[str, Scenario]
) -> None:
    slo = slos[SLO_NAME]
    bare = dataclasses.replace(slo, alerts=tuple(dataclasses.replace(a, keep_firing_for_s=0) for a in slo.alerts))
    oscillating = scenarios["oscillating-burn-does-not-flap"]
    page = bare.alerts[0]
    fired = timeline(bare, oscillating)
    page_on = [("v2", page) in fired[c.minute] for c in oscillating.checks]
    starts = sum(1 for a, b in pairwise(page_on) if b and not a)
    assert starts >= 3, "without hysteresis the page must fire again several times"
    assert page_on == conditions(bare, oscillating, "v2", page)[oscillating.checks[0].minute : oscillating.checks[-1].minute + 1]
    assert "keep_firing_for" not in render_rules(bare)
    proc = _run_variant(tmp_path, promtool, bare, oscillating)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert slo.alerts[0].keep_firing_for == 5 * MINUTE


def test_promtool_fails_when_the_expectation_is_wrong(
    tmp_path: Path, promtool: str, slos: dict[str, SLO], scenarios: dict[str, Scenario]
) -> None:
    """The harness can fail: expecting no page where the rules page is reported by promtool."""
    slo = slos[SLO_NAME]
    burn = scenarios["window-30d-burn-20x-pages"]
    wrong = dataclasses.replace(burn, checks=tuple(dataclasses.replace(c, firing=()) for c in burn.checks))
    (tmp_path / "rules.yml").write_text(render_rules(slo))
    test = tmp_path / "test.yml"
    test.write_text(render_test_file(slo, wrong, "rules.yml"))
    proc = _promtool_test(promtool, test)
    assert proc.returncode != 0 and "FAILED" in proc.stdout + proc.stderr


def test_scenarios_use_two_versions(scenarios: dict[str, Scenario]) -> None:
    for sc in scenarios.values():
        assert set(sc.events) == {"v1", "v2"}
