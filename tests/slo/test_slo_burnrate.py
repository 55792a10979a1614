"""Error budgets, burn rates and the multiwindow decision: the pure maths, against hand-worked numbers."""

from __future__ import annotations

import math

import pytest

from monitor.server.slo.burnrate import (
    DAY,
    HOUR,
    MINUTE,
    AlertState,
    BurnAlert,
    WindowCounts,
    alert_problems,
    budget_fraction_for,
    budget_remaining,
    burn_rate,
    burn_rate_factor,
    default_alerts,
    default_min_events,
    detection_time_s,
    error_budget,
    error_ratio,
    evaluate_alerts,
    false_alarm_probability,
    format_duration,
    hold,
    parse_duration,
    required_windows,
)


def test_workbook_recipe_for_a_30_day_slo() -> None:
    alerts = default_alerts(0.99, 30 * DAY)
    assert [(a.severity, a.long_window, a.short_window, a.burn_rate) for a in alerts] == [
        ("page", "1h", "5m", 14.4),
        ("page", "6h", "30m", 6.0),
        ("ticket", "1d", "2h", 3.0),
        ("ticket", "3d", "6h", 1.0),
    ]
    assert [a.budget_fraction for a in alerts] == [0.02, 0.05, 0.1, 0.1]


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        pytest.param(
            "28d", [("56m", "5m"), ("336m", "28m"), ("1344m", "112m"), ("4032m", "336m")], id="4-weeks"
        ),
        pytest.param("7d", [("14m", "5m"), ("84m", "7m"), ("336m", "28m"), ("1008m", "84m")], id="7-days"),
        pytest.param("90d", [("3h", "15m"), ("18h", "90m"), ("3d", "6h"), ("9d", "18h")], id="90-days"),
    ],
)
def test_default_windows_scale_with_the_slo_window_and_keep_the_factors(window: str, expected: list) -> None:
    alerts = default_alerts(0.99, parse_duration(window))
    assert [(a.long_window, a.short_window) for a in alerts] == expected
    # Whole-day SLO windows scale the long windows exactly, so the budget shares -- and the
    # factors -- are the workbook's.
    assert [a.burn_rate for a in alerts] == [14.4, 6.0, 3.0, 1.0]
    assert [a.budget_fraction for a in alerts] == [0.02, 0.05, 0.1, 0.1]
    assert [a.keep_firing_for for a in alerts] == [a.short_window_s for a in alerts]


@pytest.mark.parametrize(
    ("window", "expected", "fractions"),
    [
        # 1h / 30 is 2 minutes and 5m / 30 is 10 seconds: the page's windows rise to 10m / 5m.
        pytest.param("1d", [("10m", "5m"), ("12m", "5m"), ("48m", "5m"), ("144m", "12m")], [0.1, 0.05, 0.1, 0.1], id="1-day"),
        pytest.param("2d", [("10m", "5m"), ("24m", "5m"), ("96m", "8m"), ("288m", "24m")], [0.05, 0.05, 0.1, 0.1], id="2-days"),
        pytest.param("3d", [("10m", "5m"), ("36m", "5m"), ("144m", "12m"), ("432m", "36m")], [0.0333333333333, 0.05, 0.1, 0.1], id="3-days"),
    ],
)  # fmt: skip
def test_short_slo_windows_floor_their_alert_windows_and_keep_the_factors(
    window: str, expected: list, fractions: list
) -> None:
    alerts = default_alerts(0.99, parse_duration(window))
    assert [(a.long_window, a.short_window) for a in alerts] == expected
    assert [a.burn_rate for a in alerts] == [14.4, 6.0, 3.0, 1.0]
    # a window raised to its floor spends more of the budget before it fires
    assert [a.budget_fraction for a in alerts] == pytest.approx(fractions)


def test_the_recipe_needs_a_day_of_slo_window() -> None:
    with pytest.raises(ValueError, match="at least 1d"):
        default_alerts(0.99, 12 * HOUR)


def test_hold_is_prometheus_keep_firing_for() -> None:
    alert = BurnAlert("page", HOUR, 5 * MINUTE, 14.4, 0.02, 0, 5 * MINUTE)
    state = AlertState()
    timeline = []
    # condition true at 0, false 60..240 (back at 300 before 5 minutes pass), false from 360 on
    for t, condition in [(0, True), (60, False), (240, False), (300, True), (360, False), (600, False), (660, False)]:
        state = hold(alert, state, condition, t)
        timeline.append((t, state.firing))
    assert timeline == [(0, True), (60, True), (240, True), (300, True), (360, True), (600, True), (660, False)]
    # quiet from 360: 600 - 360 < 300 keeps firing; 660 - 360 = 300 resolves
    assert hold(alert, AlertState(), False, 0) == AlertState()
    no_hysteresis = BurnAlert("page", HOUR, 5 * MINUTE, 14.4, 0.02, 0, 0)
    assert hold(no_hysteresis, AlertState(True), False, 10) == AlertState()


def test_factor_is_budget_fraction_times_slo_window_over_long_window() -> None:
    assert burn_rate_factor(0.02, 30 * DAY, HOUR) == 14.4
    assert burn_rate_factor(0.05, 30 * DAY, 6 * HOUR) == 6.0
    assert burn_rate_factor(0.1, 28 * DAY, 3 * DAY) == pytest.approx(0.9333333333)
    assert budget_fraction_for(14.4, 30 * DAY, HOUR) == 0.02


@pytest.mark.parametrize(
    ("burn", "minutes"),
    [
        pytest.param(20, [43.2, 108.0, 216.0, 216.0], id="20x"),
        pytest.param(14.4, [None, 150.0, 300.0, 300.0], id="14.4x-never-the-fast-page"),
        pytest.param(2, [None, None, None, 2160.0], id="2x-slow-ticket-after-1.5-days"),
        pytest.param(0.5, [None, None, None, None], id="0.5x-never"),
    ],
)
def test_detection_time_is_budget_fraction_times_window_over_burn(burn: float, minutes: list) -> None:
    alerts = default_alerts(0.99, 30 * DAY)
    got = [detection_time_s(a, 30 * DAY, burn) for a in alerts]
    assert [None if t is None else round(t / MINUTE, 6) for t in got] == minutes


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("5m", 300), ("12h", 43200), ("30d", 2592000), ("4w", 2419200), ("1008m", 60480)],
)
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "5", "1h30m", "0d", "-1h", "1.5h", "5 minutes", "05m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration_picks_the_largest_exact_unit() -> None:
    assert [format_duration(s) for s in (300, 3600, 7 * DAY, 4032 * MINUTE, 90)] == [
        "5m",
        "1h",
        "7d",
        "4032m",
        "90s",
    ]


def test_error_budget_has_no_float_dust() -> None:
    assert error_budget(0.99) == 0.01
    assert error_budget(0.999) == 0.001
    with pytest.raises(ValueError):
        error_budget(1.0)


def test_ratios_and_budget_left() -> None:
    counts = WindowCounts(events=1000, bad=5)
    assert error_ratio(counts) == 0.005
    assert burn_rate(counts, 0.99) == pytest.approx(0.5)
    assert budget_remaining(counts, 0.99) == pytest.approx(0.5)
    assert budget_remaining(WindowCounts(1000, 30), 0.99) == pytest.approx(-2.0)
    empty = WindowCounts(0, 0)
    assert error_ratio(empty) is None and burn_rate(empty, 0.99) is None
    assert budget_remaining(empty, 0.99) == 1.0


PAGE = BurnAlert("page", HOUR, 5 * MINUTE, 14.4, 0.02, 35)


def _decide(long: tuple[float, float], short: tuple[float, float], alert: BurnAlert = PAGE):
    counts = {alert.long_window_s: WindowCounts(*long), alert.short_window_s: WindowCounts(*short)}
    (decision,) = evaluate_alerts(0.99, [alert], counts)
    return decision


@pytest.mark.parametrize(
    ("long", "short", "firing", "held"),
    [
        pytest.param((6000, 900), (500, 100), True, False, id="both-windows-burn-fires"),
        pytest.param((6000, 900), (500, 0), False, False, id="short-window-recovered-resets"),
        pytest.param((6000, 300), (500, 100), False, False, id="short-spike-alone-does-not-fire"),
        pytest.param((6000, 864), (500, 72), False, False, id="exactly-the-factor-does-not-fire"),
        pytest.param((20, 20), (5, 5), False, True, id="too-few-events-held-by-guard"),
        pytest.param((35, 6), (5, 5), True, False, id="at-the-guard-fires"),
        pytest.param((0, 0), (0, 0), False, False, id="no-events-no-alert"),
    ],
)
def test_evaluate_alerts(long, short, firing: bool, held: bool) -> None:
    decision = _decide(long, short)
    assert (decision.firing, decision.held_by_guard) == (firing, held)


def test_evaluate_alerts_reports_the_burn_rates() -> None:
    decision = _decide((6000, 900), (500, 100))
    assert decision.long_burn_rate == pytest.approx(15.0)
    assert decision.short_burn_rate == pytest.approx(20.0)
    assert decision.long_events == 6000


def test_required_windows_lists_every_window_once() -> None:
    assert required_windows(default_alerts(0.99, 30 * DAY)) == (
        5 * MINUTE,
        30 * MINUTE,
        HOUR,
        2 * HOUR,
        6 * HOUR,
        DAY,
        3 * DAY,
    )


@pytest.mark.parametrize(
    ("objective", "guards"),
    [
        pytest.param(0.99, [35, 84, 0, 0], id="99%"),
        pytest.param(0.999, [348, 834, 0, 0], id="99.9%"),
        pytest.param(0.95, [7, 17, 0, 0], id="95%"),
    ],
)
def test_default_guard_needs_five_bad_events_worth_before_a_page(objective: float, guards: list[int]) -> None:
    alerts = default_alerts(objective, 30 * DAY)
    assert [a.min_events for a in alerts] == guards
    for alert in alerts[:2]:
        # At the guard, the page's threshold is at least 5 bad events; one event fewer, below 5.
        assert alert.burn_rate * error_budget(objective) * alert.min_events >= 5 - 1e-9
        assert alert.burn_rate * error_budget(objective) * (alert.min_events - 1) < 5


def test_default_guard_keeps_false_pages_rare() -> None:
    for objective in (0.95, 0.99, 0.999):
        fast, slow = default_alerts(objective, 30 * DAY)[:2]
        assert false_alarm_probability(fast.min_events, objective, fast.burn_rate) < 1e-5
        assert false_alarm_probability(slow.min_events, objective, slow.burn_rate) < 1e-3
    # Without the guard, 3 labelled events and one bad one would page a 99 % SLO 3 % of the time.
    assert false_alarm_probability(3, 0.99, 14.4) == pytest.approx(1 - 0.99**3)


def test_false_alarm_probability_is_a_binomial_tail() -> None:
    n, p = 84, 0.01
    threshold = math.floor(6 * p * n) + 1  # more than 5.04 bad events
    exact = sum(math.comb(n, k) * p**k * (1 - p) ** (n - k) for k in range(threshold, n + 1))
    assert false_alarm_probability(n, 0.99, 6) == pytest.approx(exact, rel=1e-9)
    assert default_min_events("ticket", 3, 0.99) == 0


@pytest.mark.parametrize(
    ("alert", "objective", "window", "problem"),
    [
        pytest.param(
            BurnAlert("page", HOUR, 5 * MINUTE, 14.4, 0.02, 0),
            0.9,
            30 * DAY,
            "impossible",
            id="unreachable-factor",
        ),
        pytest.param(
            BurnAlert("ticket", 3 * DAY, 6 * HOUR, 0.5, 0.05, 0),
            0.99,
            30 * DAY,
            "below 1x",
            id="factor-below-1",
        ),
        pytest.param(
            BurnAlert("ticket", 3 * DAY, 6 * HOUR, 1, 1, 0),
            0.99,
            DAY,
            "longer than the SLO window",
            id="window-too-long",
        ),
        pytest.param(
            BurnAlert("page", HOUR, HOUR, 14.4, 0.02, 0),
            0.99,
            30 * DAY,
            "shorter than",
            id="short-not-shorter",
        ),
    ],
)
def test_alert_problems(alert: BurnAlert, objective: float, window: int, problem: str) -> None:
    problems = alert_problems(alert, objective=objective, slo_window_s=window)
    assert any(problem in p for p in problems), problems


def test_default_alerts_have_no_problems_for_common_slos() -> None:
    for objective in (0.95, 0.99, 0.999):
        for window in ("1d", "2d", "3d", "7d", "14d", "28d", "30d", "90d"):
            w = parse_duration(window)
            for alert in default_alerts(objective, w):
                assert alert_problems(alert, objective=objective, slo_window_s=w) == []


def test_package_exports_its_public_names() -> None:
    import inspect

    import monitor.server.slo as package

    assert len(package.__all__) == len(set(package.__all__))
    # submodules become attributes of the package once anything imports them
    public = {n for n, v in vars(package).items() if not n.startswith("_") and not inspect.ismodule(v)}
    assert set(package.__all__) == public
