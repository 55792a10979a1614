"""The scenarios of alerts/tests/*.yml: synthetic counter histories and the alerts expected.

Each scenario feeds ``cvmon_slo_events_total`` / ``cvmon_slo_bad_events_total`` for one SLO of
examples/cvmon.yaml (two model versions, one sample a minute) and states which
``CvmonErrorBudgetBurn`` alerts fire, for which version, at given times. The files promtool runs
are generated from here and checked in; ``CVMON_REGENERATE=1 pytest tests/slo`` rewrites them.

The alerts expected at each check come from what the built-in notifier does with the same counts:
every minute, :func:`monitor.server.slo.burnrate.evaluate_alerts` per version (or on the sum,
for an SLO with ``per_version: false``) and :func:`monitor.server.slo.burnrate.hold` for the
hysteresis. So promtool proves that PromQL and Python agree; each scenario also asserts its claim
(a page within the workbook's detection time, no alert at 0.5x, one firing interval for an
oscillating burn, ...) against those expectations, so a wrong evaluator cannot silently pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise
from typing import Any

from monitor.server.slo.burnrate import (
    HOUR,
    MINUTE,
    QUIET,
    AlertState,
    BurnAlert,
    WindowCounts,
    detection_time_s,
    evaluate_alerts,
    hold,
    required_windows,
)
from monitor.server.slo.render import ALERT_NAME, alert_annotations, alert_labels
from monitor.server.slo.spec import SLO

#: A firing alert: the version it fires for ("" when the SLO sums its versions) and the alert.
Firing = tuple[str, BurnAlert]


@dataclass(frozen=True)
class Check:
    """At ``minute``, exactly the ``firing`` alerts fire."""

    minute: int
    firing: tuple[Firing, ...]
    why: str


@dataclass(frozen=True)
class Scenario:
    """Per-minute increments of the two counters, per model version, and the checks."""

    stem: str
    slo: str
    title: str
    events: dict[str, list[int]]
    bad: dict[str, list[int]]
    checks: tuple[Check, ...] = ()
    notes: Sequence[str] = field(default_factory=tuple)

    @property
    def minutes(self) -> int:
        return len(next(iter(self.events.values())))


# --------------------------------------------------------------------------------------------
# the Python side: what the notifier decides, minute by minute


class _Counts:
    """Window sums of a scenario's increments in O(1) (prefix sums), per version or summed."""

    def __init__(self, scenario: Scenario) -> None:
        self._events = {v: [0, *accumulate(x)] for v, x in scenario.events.items()}
        self._bad = {v: [0, *accumulate(x)] for v, x in scenario.bad.items()}

    def window(self, minute: int, window_s: int, version: str) -> WindowCounts:
        """Events and bad events of the ``window_s`` before ``minute`` (what ``increase()`` over
        that range sees with one sample a minute): of ``version``, or of all versions ("")."""
        lo = max(minute - window_s // MINUTE + 1, 0)
        versions = list(self._events) if version == "" else [version]
        events = sum(self._events[v][minute + 1] - self._events[v][lo] for v in versions)
        bad = sum(self._bad[v][minute + 1] - self._bad[v][lo] for v in versions)
        return WindowCounts(events, bad)


def timeline(slo: SLO, scenario: Scenario) -> list[frozenset[Firing]]:
    """The alerts firing after each minute's evaluation, as the built-in notifier decides them."""
    counts = _Counts(scenario)
    versions = sorted(scenario.events) if slo.per_version else [""]
    windows = required_windows(slo.alerts)
    states: dict[Firing, AlertState] = {}
    out = []
    for minute in range(scenario.minutes):
        now: set[Firing] = set()
        for version in versions:
            sums = {w: counts.window(minute, w, version) for w in windows}
            for decision in evaluate_alerts(slo.objective, slo.alerts, sums):
                key = (version, decision.alert)
                states[key] = state = hold(decision.alert, states.get(key, QUIET), decision.firing, minute * MINUTE)
                if state.firing:
                    now.add(key)
        out.append(frozenset(now))
    return out


def conditions(slo: SLO, scenario: Scenario, version: str, alert: BurnAlert) -> list[bool]:
    """The alert's condition at each minute, before the hysteresis."""
    counts = _Counts(scenario)
    windows = required_windows(slo.alerts)
    out = []
    for minute in range(scenario.minutes):
        sums = {w: counts.window(minute, w, version) for w in windows}
        out.append(next(d.firing for d in evaluate_alerts(slo.objective, slo.alerts, sums) if d.alert == alert))
    return out


def _checked(slo: SLO, scenario: Scenario, times: Sequence[tuple[int, str]]) -> Scenario:
    fired = timeline(slo, scenario)
    checks = tuple(Check(m, tuple(sorted(fired[m], key=_order)), why) for m, why in times)
    return Scenario(scenario.stem, scenario.slo, scenario.title, scenario.events, scenario.bad, checks, scenario.notes)


def _order(f: Firing) -> tuple[str, int, int]:
    return (f[0], f[1].long_window_s, f[1].short_window_s)


def detection_minutes(slo: SLO, alert: BurnAlert, burn: float) -> tuple[int, int]:
    """(last quiet minute, first firing minute) of ``alert`` under a constant ``burn`` that starts
    after a healthy history, from the workbook's detection time."""
    t = detection_time_s(alert, slo.window_s, burn)
    assert t is not None
    t /= MINUTE
    return math.ceil(t) - 1, math.floor(t) + 1


def _steady(rate: int, minutes: int) -> list[int]:
    return [rate] * minutes


def _after(history: int, rate: int, end: int) -> list[int]:
    # Counter samples are taken at whole minutes: the first increments after the history are in
    # the sample of minute history + 1.
    return [0] * (history + 1) + _steady(rate, end - history - 1)


def _pages(slo: SLO) -> list[BurnAlert]:
    return [a for a in slo.alerts if a.severity == "page"]


def _whole(x: float) -> int:
    assert abs(x - round(x)) < 1e-9, f"{x} events is not a whole number"
    return round(x)


# --------------------------------------------------------------------------------------------
# the scenarios


def burn_pages(slo: SLO, burn: float = 20.0) -> Scenario:
    """A ``burn``x burn on version v2 after a healthy history pages v2 within the workbook's
    detection time (budget fraction x SLO window / burn) for every page, and v1 not at all."""
    pages = _pages(slo)
    history = max(max(a.long_window_s for a in pages) // MINUTE, 60)
    times = {a: detection_minutes(slo, a, burn) for a in pages}
    end = history + max(fires for _, fires in times.values()) + 1
    v2_bad = _whole(burn * slo.error_budget * 40)
    notes = [
        f"{history} healthy minutes (v1 60 events/min, v2 40), then v2 burns at {burn:g}x "
        f"({v2_bad} of its 40 events a minute bad); v1 stays healthy.",
        *(
            f"{a.burn_rate:g}x over {a.long_window}/{a.short_window}: detection time {a.budget_fraction:g} x "
            f"{slo.window} / {burn:g} = {detection_time_s(a, slo.window_s, burn) / MINUTE:g} min."  # type: ignore[operator]
            for a in pages
        ),
        "The tickets' long windows reach back before the history, so they fire early here.",
    ]
    checks = [(history, "healthy traffic: nothing pages")]
    for a, (quiet, fires) in times.items():
        checks += [
            (history + quiet, f"{quiet} min of burn: no {a.long_window}/{a.short_window} page yet"),
            (history + fires, f"{fires} min: the {a.long_window}/{a.short_window} page fires for v2"),
        ]
    scenario = _checked(
        slo,
        Scenario(
            f"window-{slo.window}-burn-{burn:g}x-pages",
            slo.name,
            f"on a {slo.window} SLO a {burn:g}x burn pages within the workbook's detection time",
            {"v1": _steady(60, end), "v2": _steady(40, end)},
            {"v1": [0] * end, "v2": _after(history, v2_bad, end)},
            notes=notes,
        ),
        sorted(set(checks)),
    )
    by_minute = {c.minute: set(c.firing) for c in scenario.checks}
    for a, (quiet, fires) in times.items():
        assert ("v2", a) not in by_minute[history + quiet], (slo.name, a)
        assert ("v2", a) in by_minute[history + fires], (slo.name, a)
    assert not any(version == "v1" for c in scenario.checks for version, _ in c.firing)
    assert not any(a.severity == "page" for _, a in by_minute[history])
    return scenario


def half_burn_silent(slo: SLO) -> Scenario:
    """A 0.5x burn from the first minute (every window always holds 0.5x) never alerts."""
    per_bad = _whole(1 / (0.5 * slo.error_budget))  # events a minute for one bad event
    # the page windows full, and long enough for the tickets' windows to hold far more than the
    # guard: 0.5x is below every factor (all >= 1) whatever the window
    end = max(6 * 60, max(a.long_window_s for a in _pages(slo)) // MINUTE) + 1
    scenario = _checked(
        slo,
        Scenario(
            f"window-{slo.window}-burn-0.5x-silent",
            slo.name,
            f"on a {slo.window} SLO a 0.5x burn never alerts",
            {"v1": _steady(per_bad, end), "v2": _steady(2 * per_bad, end)},
            {"v1": _steady(1, end), "v2": _steady(2, end)},
            notes=(f"v1 {per_bad} events/min with 1 bad, v2 twice that with 2 bad, from the start: 0.5x everywhere.",),
        ),
        [(m, "0.5x burn: nothing fires") for m in (5, 60, end - 1)],
    )
    assert not any(c.firing for c in scenario.checks)
    return scenario


def ticket_not_page(slo: SLO) -> Scenario:
    """2 % bad on both versions of a 99 % SLO (2x): below both pages and the fast ticket, above
    the slow ticket's 1x, which fires for each version as soon as its windows fill."""
    assert slo.objective == 0.99
    end = 12 * 60 + 1
    scenario = _checked(
        slo,
        Scenario(
            "burn-2x-tickets-no-page",
            slo.name,
            "a 2x burn opens a ticket (1x over 3d and 6h) for each version but never pages",
            {"v1": _steady(50, end), "v2": _steady(50, end)},
            {"v1": _steady(1, end), "v2": _steady(1, end)},
            notes=("Two versions of 50 events/min, 1 bad each, from the start; checked until the 6h page window is full.",),
        ),
        [(m, "2x burn: the 3d/6h ticket only, per version") for m in (5, 60, 6 * 60, 12 * 60)],
    )
    slow_ticket = slo.alerts[3]
    assert all(set(c.firing) == {("v1", slow_ticket), ("v2", slow_ticket)} for c in scenario.checks)
    return scenario


def sparse_version(slo: SLO) -> Scenario:
    """The low-event guard holds per version: v1 serves 100 good events a minute, v2 one event
    every 10 minutes, each bad (a 100x burn). v2's pages wait for their guard on v2's own events
    (the model as a whole has plenty); its tickets (no guard) report the burn."""
    end = 7 * 60 + 1
    sparse = [1 if m and m % 10 == 0 else 0 for m in range(end)]
    page_fast, page_slow, ticket_fast, ticket_slow = slo.alerts
    assert page_fast.min_events > 6 and page_slow.min_events > 36, "the guards must exceed this traffic"
    scenario = _checked(
        slo,
        Scenario(
            "sparse-events-no-page",
            slo.name,
            f"a version with too few events (6 an hour, all bad) does not page: the guards want "
            f"{page_fast.min_events} of its own events per 1h and {page_slow.min_events} per 6h",
            {"v1": _steady(100, end), "v2": sparse},
            {"v1": [0] * end, "v2": list(sparse)},
            notes=(
                "v1: 100 good events a minute, so the model as a whole passes every guard.",
                "tests/slo/test_slo_promtool.py runs this input against rules without the guard: they page.",
            ),
        ),
        [(m, "v2 has 6 events/h, all bad: tickets only, its guards hold the pages") for m in (60, 6 * 60, 7 * 60)],
    )
    assert all(set(c.firing) == {("v2", ticket_fast), ("v2", ticket_slow)} for c in scenario.checks)
    return scenario


def uneven_traffic(slo: SLO) -> Scenario:
    """A quiet hour of v2 (10/min, all good) but for a 5-minute burst of 1000/min at 20 % bad.
    Totals over 1h: 1000 bad of 5550 = 18 % > 14.4 %: page. An average of the twelve 5-minute
    ratios would say 1.7 % and stay quiet."""
    end = 61
    v2 = [0] + [10 if m <= 55 else 1000 for m in range(1, end)]
    scenario = _checked(
        slo,
        Scenario(
            "uneven-traffic-uses-totals",
            slo.name,
            "long windows divide totals (18 % bad over the hour), not averages of 5m ratios (1.7 %)",
            {"v1": _steady(5, end), "v2": v2},
            {"v1": [0] * end, "v2": [0 if m <= 55 else 200 for m in range(end)]},
            notes=("v2: 55 quiet minutes at 10 events/min, then 5 minutes at 1000/min with 200 bad; v1 healthy.",),
        ),
        [(55, "the quiet part: nothing bad yet"), (60, "after the burst: the page fires for v2")],
    )
    assert ("v2", slo.alerts[0]) in scenario.checks[-1].firing
    return scenario


def canary(slo: SLO) -> Scenario:
    """A canary burning at 40x beside a healthy version with 10x its traffic: per version, the
    canary pages on its own counts (detection 0.02 x 30d / 40 = 21.6 min); summed over versions the
    model burns at 3.6x, which no page fires on (tests/slo runs the same input against rules with
    ``per_version: false``)."""
    assert slo.objective == 0.99
    history = 6 * HOUR // MINUTE
    page_fast = slo.alerts[0]
    quiet, fires = detection_minutes(slo, page_fast, 40)
    end = history + 2 * HOUR // MINUTE + 1
    scenario = _checked(
        slo,
        Scenario(
            "canary-40x-pages-per-version",
            slo.name,
            "a canary burning at 40x pages on its own counts beside a healthy version with 10x its traffic",
            {"v1": _steady(100, end), "v2": _steady(10, end)},
            {"v1": [0] * end, "v2": _after(history, 4, end)},
            notes=(
                f"{history} healthy minutes (v1 100 events/min, the canary v2 10), then 4 of v2's 10 bad: 40x for v2,",
                "3.6x for the model as a whole (4 bad of 110).",
            ),
        ),
        [
            (history, "healthy: nothing fires"),
            (history + quiet, f"{quiet} min of canary burn: no page yet"),
            (history + fires, f"{fires} min: the 1h/5m page fires for v2"),
            (end - 1, "two hours in: v2 pages, v1 never"),
        ],
    )
    assert ("v2", page_fast) in scenario.checks[2].firing and ("v2", page_fast) not in scenario.checks[1].firing
    assert not any(v == "v1" for c in scenario.checks for v, _ in c.firing)
    return scenario


#: v2's bad events per minute in the oscillating scenario (100 events a minute): 6 minutes at
#: 18 bad, 4 at 11, so the 5-minute burn crosses 14.4x both ways every few minutes while the 1h
#: burn (15.2x on average) stays above it.
OSCILLATION = (18, 18, 18, 18, 18, 18, 11, 11, 11, 11)


def oscillating(slo: SLO) -> Scenario:
    """A burn hovering at the fast page's factor: without hysteresis the page would resolve and
    fire again every few minutes; with ``keep_firing_for`` (its 5m short window) it fires once and
    resolves once, 5 minutes after the burn ends."""
    page_fast = slo.alerts[0]
    keep = page_fast.keep_firing_for // MINUTE
    history = 6 * HOUR // MINUTE
    burn_minutes = 100
    end = history + burn_minutes + 15
    bad = [0] * (history + 1) + [OSCILLATION[i % len(OSCILLATION)] for i in range(burn_minutes)]
    bad += [0] * (end - len(bad))
    raw = Scenario("oscillating-burn-does-not-flap", slo.name, "", {"v1": _steady(60, end), "v2": _steady(100, end)},
                   {"v1": [0] * end, "v2": bad})  # fmt: skip
    condition = conditions(slo, raw, "v2", page_fast)
    first = condition.index(True)
    last = len(condition) - 1 - condition[::-1].index(True)
    flips = sum(a != b for a, b in pairwise(condition[first : last + 1]))
    assert flips >= 6, f"the burn must cross the factor both ways several times, not {flips}"
    scenario = _checked(
        slo,
        Scenario(
            raw.stem,
            slo.name,
            f"a burn oscillating around 14.4x does not flap: the 1h/5m page fires once (minute {first}) and resolves "
            f"{keep} minutes after its condition first failed for good (minute {last + 1})",
            raw.events,
            raw.bad,
            notes=(
                f"{history} healthy minutes, then {burn_minutes} minutes of v2 (100 events/min) with bad events "
                f"cycling {list(OSCILLATION)}: the 5m burn crosses 14.4x both ways {flips} times.",
                "tests/slo/test_slo_promtool.py runs this input against rules without keep_firing_for: they flap.",
            ),
        ),
        [(first - 1, "the burn builds up: not yet")]
        + [(m, "the page keeps firing while the burn hovers at the factor") for m in range(first, last + 1)]
        + [(m, f"held: quiet for {m - last - 1} of {keep} minutes") for m in range(last + 1, last + 1 + keep)]
        + [(last + 1 + keep, f"resolved: quiet for {keep} minutes")],
    )
    fired = [("v2", page_fast) in c.firing for c in scenario.checks]
    assert fired == [False] + [True] * (last + 1 + keep - first) + [False]
    return scenario


def ten_x_seven_days(slo: SLO) -> Scenario:
    """A 10x burn on a 7-day, 95 % SLO: 50 % bad. Below the 14.4x page, above the 6x one, whose
    windows scale to 84m / 7m: it fires after 0.05 x 7d / 10 = 50.4 minutes, as the workbook's
    6h page would after 0.05 x 30d / 10 = 3.6 hours on a 30-day SLO."""
    assert slo.objective == 0.95 and slo.window == "7d", "sized for 95 % / 7d"
    page_fast, page_slow = slo.alerts[:2]
    assert (page_slow.long_window, page_slow.short_window, page_slow.burn_rate) == ("84m", "7m", 6.0)
    history = page_slow.long_window_s // MINUTE
    quiet, fires = detection_minutes(slo, page_slow, 10)
    end = history + fires + 1
    scenario = _checked(
        slo,
        Scenario(
            "window-7d-burn-10x-pages",
            slo.name,
            "on a 7-day SLO the scaled 84m/7m page detects a 10x burn after 50.4 minutes",
            {"v1": _steady(50, end), "v2": _steady(50, end)},
            {"v1": _after(history, 25, end), "v2": _after(history, 25, end)},
            notes=(f"{history} healthy minutes (100 true 7s a minute over two versions), then half of them missed.",),
        ),
        [
            (history, "healthy: nothing fires"),
            (history + quiet, f"{quiet} min of 10x burn: no page yet"),
            (history + fires, f"{fires} min: the 84m/7m page fires for both versions"),
        ],
    )
    assert not {("v1", page_slow), ("v2", page_slow)} & set(scenario.checks[1].firing)
    assert {("v1", page_slow), ("v2", page_slow)} <= set(scenario.checks[2].firing)
    assert not any(a == page_fast for c in scenario.checks for _, a in c.firing)
    return scenario


#: The SLOs of examples/cvmon.yaml whose windows the short-window table of docs/slo.md covers.
WINDOW_SLOS = {"1d": "digits-latency-1d", "7d": "digits-recall-7", "28d": "shelf-detector-latency", "30d": "digits-latency"}
#: The 30-day, 99 % SLO the other scenarios exercise: the workbook's own example.
SLO_NAME = "digits-latency"


def all_scenarios(slos: Sequence[SLO]) -> list[Scenario]:
    """Every committed scenario, for the example SLOs."""
    by_name = {s.name: s for s in slos}
    main = by_name[SLO_NAME]
    assert main.objective == 0.99 and main.window == "30d" and main.per_version
    out = []
    for name in WINDOW_SLOS.values():
        out += [burn_pages(by_name[name]), half_burn_silent(by_name[name])]
    out += [ticket_not_page(main), sparse_version(main), uneven_traffic(main), canary(main), oscillating(main)]
    out.append(ten_x_seven_days(by_name["digits-recall-7"]))
    out.append(cost_overrun_scenario(by_name[COST_SLO_NAME]))
    return out


#: The cost SLO of examples/cvmon.yaml: a time slice whose default alerts are tickets only.
COST_SLO_NAME = "digits-cost"


def cost_overrun_scenario(slo: SLO) -> Scenario:
    """A day of evaluation hours within budget, then every hour over it: each hour is one event,
    counted five minutes after it ends. The cost SLO's default recipe keeps the workbook's two
    tickets (3x over 1d / 2h, 1x over 3d / 6h) and no page: both tickets open, nobody is paged."""
    assert slo.sli == "cost" and slo.objective == 0.95 and slo.window_s == 30 * 86400, "sized for 95 % / 30d"
    assert {a.severity for a in slo.alerts} == {"ticket"}, "a cost SLO's default alerts are tickets"
    fast, slow = slo.alerts
    history = 24 * 60
    end = history + 10 * 60 + 7
    hourly = [1 if m % 60 == 5 and m > 5 else 0 for m in range(end)]
    bad = [x if m > history else 0 for m, x in enumerate(hourly)]
    scenario = _checked(
        slo,
        Scenario(
            "cost-overrun-tickets-no-page",
            slo.name,
            "a cost SLO: hours over the bound open its tickets (1d/2h, 3d/6h), and it never pages",
            {"v1": hourly, "v2": hourly},
            {"v1": bad, "v2": [0] * end},
            notes=(
                "One event per evaluated hour and version, counted 5 minutes after the hour; 24 hours "
                "within the bound, then every hour of v1 above it while v2 stays within it.",
            ),
        ),
        [
            (history + 1, "a day within the bound: nothing fires"),
            (history + 2 * 60 + 6, "2 bad hours: 2 of 26 over 3d, above 1x; 2 of 24 over 1d, below 3x"),
            (history + 10 * 60 + 6, "10 bad hours: both tickets"),
        ],
    )
    assert [c.firing for c in scenario.checks] == [(), (("v1", slow),), (("v1", fast), ("v1", slow))]
    return scenario


# --------------------------------------------------------------------------------------------
# promtool's file format


def cumulative(increments: Sequence[int]) -> list[int]:
    """Counter values from per-minute increments (the first increment is the value at minute 0)."""
    return list(accumulate(increments))


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


def expected_labels(slo: SLO, version: str, alert: BurnAlert) -> dict[str, str]:
    """The labels of a firing alert: the rule's, and the version it fires for (per version)."""
    labels = alert_labels(slo, alert)
    return labels | {"version": version} if version else labels


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
                    {"exp_labels": expected_labels(slo, v, a), "exp_annotations": alert_annotations(slo, a)}
                    for v, a in check.firing
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
