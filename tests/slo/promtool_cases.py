"""The scenarios of alerts/tests/*.yml: synthetic counter histories and the alerts expected.

Each scenario feeds ``cvmon_slo_events_total`` / ``cvmon_slo_bad_events_total`` for one SLO of
examples/cvmon.yaml (two model versions, one sample a minute) and states which
``CvmonErrorBudgetBurn`` alerts fire at given times. The files promtool runs are generated from
here and checked in; ``CVMON_REGENERATE=1 pytest tests/slo`` rewrites them.

The alerts expected at each check come from the Python evaluator the built-in notifier uses
(:func:`monitor.server.slo.burnrate.evaluate_alerts`), so promtool proves that PromQL and Python
agree; each scenario also asserts its claim (a page within the workbook's detection time, no alert
at 0.5x, ...) against those expectations, so a wrong evaluator cannot silently pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.server.slo.burnrate import (
    DAY,
    HOUR,
    MINUTE,
    BurnAlert,
    WindowCounts,
    detection_time_s,
    evaluate_alerts,
    required_windows,
)
from monitor.server.slo.render import ALERT_NAME, alert_annotations, alert_labels
from monitor.server.slo.spec import SLO

#: The SLO every scenario exercises: 99 % over 30 days, the workbook's own example.
SLO_NAME = "digits-latency"
#: Minutes of healthy traffic before a burn starts: the page windows (up to 6h) are full of good
#: events when it does, so the pages' detection times are the workbook's steady-state ones.
#: (Three days would do the same for the tickets, at ten times promtool's run time.)
HISTORY_MIN = 6 * HOUR // MINUTE


@dataclass(frozen=True)
class Check:
    """At ``minute``, exactly the ``firing`` alerts fire."""

    minute: int
    firing: tuple[BurnAlert, ...]
    why: str


@dataclass(frozen=True)
class Scenario:
    """Per-minute increments of the two counters, per model version, and the checks."""

    stem: str
    title: str
    events: dict[str, list[int]]
    bad: dict[str, list[int]]
    checks: tuple[Check, ...] = ()
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def minutes(self) -> int:
        return len(next(iter(self.events.values())))


def window_counts(scenario: Scenario, minute: int, window_s: int) -> WindowCounts:
    """Events and bad events over the ``window_s`` before ``minute`` (both counters' increase),
    summed over versions: what the built-in notifier reads from the database."""
    lo = max(minute - window_s // MINUTE + 1, 0)
    events = sum(sum(v[lo : minute + 1]) for v in scenario.events.values())
    bad = sum(sum(v[lo : minute + 1]) for v in scenario.bad.values())
    return WindowCounts(events, bad)


def firing_at(slo: SLO, scenario: Scenario, minute: int) -> tuple[BurnAlert, ...]:
    """The alerts the Python evaluator (the built-in notifier's) fires at ``minute``."""
    counts = {w: window_counts(scenario, minute, w) for w in required_windows(slo.alerts)}
    return tuple(d.alert for d in evaluate_alerts(slo.objective, slo.alerts, counts) if d.firing)


def _checked(slo: SLO, scenario: Scenario, times: Sequence[tuple[int, str]]) -> Scenario:
    checks = tuple(Check(m, firing_at(slo, scenario, m), why) for m, why in times)
    return Scenario(scenario.stem, scenario.title, scenario.events, scenario.bad, checks, scenario.notes)


def detection_minutes(slo: SLO, alert: BurnAlert, burn: float) -> tuple[int, int]:
    """(last quiet minute, first firing minute) of ``alert`` under a constant ``burn`` that starts
    after a healthy history, from the workbook's detection time."""
    t = detection_time_s(alert, slo.window_s, burn)
    assert t is not None
    t /= MINUTE
    return math.ceil(t) - 1, math.floor(t) + 1


def _steady(rate: int, minutes: int) -> list[int]:
    return [rate] * minutes


def _split(total: list[int], share: float) -> tuple[list[int], list[int]]:
    """Split per-minute increments between two versions (whole events, the first gets ``share``)."""
    first = [round(x * share) for x in total]
    return first, [x - y for x, y in zip(total, first, strict=True)]


def _burn_after_history(rate: int, end: int) -> list[int]:
    # Counter samples are taken at whole minutes: the burn's first bad events are in the sample of
    # minute HISTORY_MIN + 1.
    return [0] * (HISTORY_MIN + 1) + _steady(rate, end - HISTORY_MIN - 1)


def scenarios(slo: SLO) -> list[Scenario]:
    """The scenarios of the issue's definition of done, for ``slo`` (99 %, 30 days).

    Raises AssertionError when the Python evaluator contradicts a scenario's claim (for instance
    when a page would not fire within the workbook's detection time).
    """
    assert slo.objective == 0.99 and slo.window_s == 30 * DAY, "the scenarios are sized for 99 % / 30d"
    page_fast, page_slow, ticket_fast, ticket_slow = slo.alerts
    out = []

    # 20x: 100 events a minute, then 20 % bad -- all on v2, so a rule that forgot to sum over
    # versions would see v2 alone burning at 50x and page 25 minutes early.
    fast_quiet, fast_fires = detection_minutes(slo, page_fast, 20)
    slow_quiet, slow_fires = detection_minutes(slo, page_slow, 20)
    end = HISTORY_MIN + slow_fires + 1
    v1, v2 = _split(_steady(100, end), 0.6)
    burn = _checked(
        slo,
        Scenario(
            "burn-20x-pages",
            "a 20x burn pages within the workbook's detection time (43.2 min for 14.4x over 1h)",
            {"v1": v1, "v2": v2},
            {"v1": [0] * end, "v2": _burn_after_history(20, end)},
            notes=(
                f"{HISTORY_MIN // 60}h of healthy traffic (100 events/min on two versions), then 20 % bad.",
                (
                    "Detection time = budget fraction x SLO window / burn rate: 0.02 x 30d / 20 = 43.2 min "
                    "for the 1h/5m page, 0.05 x 30d / 20 = 108 min for the 6h/30m page."
                ),
                "The tickets' long windows reach back before the history, so they fire early here.",
            ),
        ),
        [
            (HISTORY_MIN, "healthy traffic: nothing fires"),
            (HISTORY_MIN + fast_quiet, f"{fast_quiet} min of 20x burn: no page yet"),
            (HISTORY_MIN + fast_fires, f"{fast_fires} min: the 1h/5m page fires"),
            (HISTORY_MIN + slow_quiet, f"{slow_quiet} min: not yet the 6h/30m page"),
            (HISTORY_MIN + slow_fires, f"{slow_fires} min: the 6h/30m page fires too"),
        ],
    )
    by_minute = {c.minute: set(c.firing) for c in burn.checks}
    assert page_fast not in by_minute[HISTORY_MIN + fast_quiet]
    assert page_fast in by_minute[HISTORY_MIN + fast_fires]
    assert page_slow not in by_minute[HISTORY_MIN + slow_quiet]
    assert page_slow in by_minute[HISTORY_MIN + slow_fires]
    out.append(burn)

    # 0.5x: 0.5 % bad from the first minute, so every window always holds a 0.5x burn.
    end = 24 * 60 + 1
    v1, v2 = _split(_steady(200, end), 0.6)
    half = _checked(
        slo,
        Scenario(
            "burn-0.5x-never-alerts",
            "a 0.5x burn (0.5 % bad against a 1 % budget) never alerts",
            {"v1": v1, "v2": v2},
            {"v1": _steady(1, end), "v2": [0] * end},
            notes=("200 events/min, 1 bad/min, from the start: every window's burn rate is 0.5x.",),
        ),
        [(m, "0.5x burn: nothing fires") for m in (5, 60, 6 * 60, 24 * 60)],
    )
    assert not any(c.firing for c in half.checks)
    out.append(half)

    # 2x: 2 % bad from the first minute: below both page factors (14.4, 6) and the fast ticket's
    # (3); above the slow ticket's (1x over 3d and 6h), which fires as soon as its windows fill.
    end = 12 * 60 + 1
    v1, v2 = _split(_steady(100, end), 0.5)
    b1, b2 = _split(_steady(2, end), 0.5)
    double = _checked(
        slo,
        Scenario(
            "burn-2x-tickets-no-page",
            "a 2x burn opens a ticket (1x over 3d and 6h) but never pages",
            {"v1": v1, "v2": v2},
            {"v1": b1, "v2": b2},
            notes=(
                "100 events/min, 2 bad/min, from the start; checked until the 6h page window is long full.",
            ),
        ),
        [(m, "2x burn: the 3d/6h ticket only") for m in (5, 60, 6 * 60, 12 * 60)],
    )
    assert all(c.firing == (ticket_slow,) for c in double.checks)
    out.append(double)

    # Too few events: one labelled event every 10 minutes, every one bad (a 100x burn). The
    # pages' guards (35 events per 1h, 84 per 6h) hold them; the tickets report it.
    end = 7 * 60 + 1
    events = [1 if m and m % 10 == 0 else 0 for m in range(end)]
    assert page_fast.min_events > 6 and page_slow.min_events > 36, "the guards must exceed this traffic"
    sparse = _checked(
        slo,
        Scenario(
            "sparse-events-no-page",
            f"an SLO with too few events (6 an hour, all bad) does not page: the guards want "
            f"{page_fast.min_events} per 1h and {page_slow.min_events} per 6h",
            {"v1": events, "v2": [0] * end},
            {"v1": list(events), "v2": [0] * end},
            notes=(
                "tests/slo/test_slo_promtool.py runs this input against rules without the guard: they page.",
            ),
        ),
        [(m, "6 events/h, all bad: tickets only, the guards hold the pages") for m in (60, 6 * 60, 7 * 60)],
    )
    assert all(c.firing == (ticket_fast, ticket_slow) for c in sparse.checks)
    out.append(sparse)

    # Uneven traffic: a quiet hour (10/min, all good) but for a 5-minute burst of 1000/min at 20 %
    # bad. Totals over 1h: 1000 bad of 5550 = 18 % > 14.4 %: page. An average of the twelve
    # 5-minute ratios would say 1.7 % and stay quiet.
    end = 61
    total = [0] + [10 if m <= 55 else 1000 for m in range(1, end)]
    v1, v2 = _split(total, 0.6)
    uneven = _checked(
        slo,
        Scenario(
            "uneven-traffic-uses-totals",
            "long windows divide totals (18 % bad over the hour), not averages of 5m ratios (1.7 %)",
            {"v1": v1, "v2": v2},
            {"v1": [0] * end, "v2": [0 if m <= 55 else 200 for m in range(end)]},
            notes=("55 quiet minutes at 10 events/min, then 5 minutes at 1000/min with 200 bad.",),
        ),
        [(55, "the quiet part: nothing bad yet"), (60, "after the burst: the page fires")],
    )
    assert page_fast in uneven.checks[-1].firing
    out.append(uneven)
    return out


#: A 7-day SLO of examples/cvmon.yaml: its windows are the workbook's scaled by 7/30.
SCALED_SLO_NAME = "digits-recall-7"


def scaled_window_scenario(slo: SLO) -> Scenario:
    """A 10x burn on a 7-day, 95 % SLO: 50 % bad. Below the 14.4x page, above the 6x one, whose
    windows scale to 84m / 7m: it fires after 0.05 x 7d / 10 = 50.4 minutes, as the workbook's
    6h page would after 0.05 x 30d / 10 = 3.6 hours on a 30-day SLO."""
    assert slo.objective == 0.95 and slo.window_s == 7 * DAY, "sized for 95 % / 7d"
    page_fast, page_slow = slo.alerts[:2]
    assert (page_slow.long_window, page_slow.short_window, page_slow.burn_rate) == ("84m", "7m", 6.0)
    history = page_slow.long_window_s // MINUTE
    quiet, fires = detection_minutes(slo, page_slow, 10)
    end = history + fires + 1
    v1, v2 = _split(_steady(100, end), 0.5)
    bad = [0] * (history + 1) + _steady(50, end - history - 1)
    b1, b2 = _split(bad, 0.5)
    scenario = _checked(
        slo,
        Scenario(
            "window-7d-burn-10x-pages",
            "on a 7-day SLO the scaled 84m/7m page detects a 10x burn after 50.4 minutes",
            {"v1": v1, "v2": v2},
            {"v1": b1, "v2": b2},
            notes=(f"{history} healthy minutes (100 true 7s a minute), then half of them missed.",),
        ),
        [
            (history, "healthy: nothing fires"),
            (history + quiet, f"{quiet} min of 10x burn: no page yet"),
            (history + fires, f"{fires} min: the 84m/7m page fires"),
        ],
    )
    assert page_slow not in scenario.checks[1].firing and page_slow in scenario.checks[2].firing
    assert not any(page_fast in c.firing for c in scenario.checks)
    return scenario


#: The cost SLO of examples/cvmon.yaml: a time slice whose default alerts are tickets only.
COST_SLO_NAME = "digits-cost"


def cost_overrun_scenario(slo: SLO) -> Scenario:
    """A day of evaluation hours within budget, then every hour over it: each hour is one event,
    counted five minutes after it ends. The cost SLO's default recipe keeps the workbook's two
    tickets (3x over 1d / 2h, 1x over 3d / 6h) and no page: both tickets open, nobody is paged."""
    assert slo.sli == "cost" and slo.objective == 0.95 and slo.window_s == 30 * DAY, "sized for 95 % / 30d"
    assert {a.severity for a in slo.alerts} == {"ticket"}, "a cost SLO's default alerts are tickets"
    fast, slow = slo.alerts
    history = 24 * 60
    end = history + 10 * 60 + 6
    hourly = [1 if m % 60 == 5 and m > 5 else 0 for m in range(end)]
    bad = [x if m > history else 0 for m, x in enumerate(hourly)]
    scenario = _checked(
        slo,
        Scenario(
            "cost-overrun-tickets-no-page",
            "a cost SLO: hours over the bound open its tickets (1d/2h, 3d/6h), and it never pages",
            {"v1": hourly},
            {"v1": bad},
            notes=(
                "One event per evaluated hour, counted 5 minutes after the hour; 24 hours within the "
                "bound, then every hour above it.",
            ),
        ),
        [
            (history + 1, "a day within the bound: nothing fires"),
            (history + 2 * 60 + 6, "2 bad hours: 2 of 26 over 3d, above 1x; 2 of 24 over 1d, below 3x"),
            (history + 10 * 60 + 6, "10 bad hours: both tickets"),
        ],
    )
    assert [c.firing for c in scenario.checks] == [(), (slow,), (fast, slow)]
    return scenario


# --------------------------------------------------------------------------------------------
# promtool's file format


def cumulative(increments: Sequence[int]) -> list[int]:
    """Counter values from per-minute increments (the first increment is the value at minute 0)."""
    out, total = [], 0
    for x in increments:
        total += x
        out.append(total)
    return out


def encode_series(values: Sequence[int]) -> str:
    """promtool's expanding notation: runs with a constant step become ``start+stepxN``."""
    parts = []
    i = 0
    while i < len(values):
        j = i
        step = values[i + 1] - values[i] if i + 1 < len(values) else 0
        while j + 1 < len(values) and values[j + 1] - values[j] == step:
            j += 1
        parts.append(f"{values[i]}+{step}x{j - i}" if j > i else f"{values[i]}")
        i = j + 1
    return " ".join(parts)


def unit_test_data(slo: SLO, scenario: Scenario, rules_path: str) -> dict[str, Any]:
    """The data of one promtool test file."""
    series = []
    for counter, per_version in (
        ("cvmon_slo_events_total", scenario.events),
        ("cvmon_slo_bad_events_total", scenario.bad),
    ):
        for version, increments in per_version.items():
            series.append(
                {
                    "series": f'{counter}{{slo="{slo.name}",model="{slo.model}",version="{version}"}}',
                    "values": encode_series(cumulative(increments)),
                }
            )
    alert_tests = []
    for check in scenario.checks:
        alert_tests.append(
            {
                "eval_time": f"{check.minute}m",
                "alertname": ALERT_NAME,
                "exp_alerts": [
                    {"exp_labels": alert_labels(slo, a), "exp_annotations": alert_annotations(slo, a)}
                    for a in check.firing
                ],
            }
        )
    return {
        "rule_files": [rules_path],
        "evaluation_interval": "1m",
        "tests": [
            {"name": scenario.title, "interval": "1m", "input_series": series, "alert_rule_test": alert_tests}
        ],
    }


def render_test_file(slo: SLO, scenario: Scenario, rules_path: str) -> str:
    """The text of one promtool test file, with a header saying what it proves and why."""
    import yaml

    lines = [
        "# Generated by tests/slo/promtool_cases.py: do not edit (CVMON_REGENERATE=1 pytest tests/slo).",
        f"# SLO {slo.name}: objective {slo.objective:g} over {slo.window}. {scenario.title}.",
        *(f"# {note}" for note in scenario.notes),
        *(f"# {check.minute}m: {check.why}" for check in scenario.checks),
    ]
    body = yaml.safe_dump(unit_test_data(slo, scenario, rules_path), sort_keys=False, width=10_000)
    return "\n".join(lines) + "\n" + body
