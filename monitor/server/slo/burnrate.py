"""Error budgets and multiwindow, multi-burn-rate alerting: pure maths, no I/O.

An SLO promises that at least ``objective`` of its events are good over ``window``. The error
budget is ``1 - objective``: the fraction of events allowed to be bad. The *burn rate* over some
span is the observed bad fraction divided by the budget, so a burn rate of 1 spends exactly the
whole budget by the end of the SLO window and 14.4 spends it 14.4 times as fast.

The Google SRE Workbook ("Alerting on SLOs", recipe 6) pages when 2 % of a 30-day budget is spent
within 1 hour or 5 % within 6 hours, and opens a ticket when 10 % is spent within 1 day or within
3 days. Each condition must hold over a long window *and* over a short window (1/12 of it) so an
alert resets soon after the burn stops. We express the recipe the way the workbook derives it, as
*budget fractions*: the burn-rate factor of an alert is ::

    factor = budget_fraction * slo_window / long_window

which gives the workbook's 14.4, 6, 3 and 1 for a 30-day window. For other SLO windows the
default alert windows scale with the SLO window and the factors stay, as Pyrra scales its recipe
(see :func:`default_alerts`): a 7-day SLO pages on 14.4x over 14 minutes (2 % of *its* budget).
Windows never go below 5 minutes (short) and twice that (long), so a 1-day SLO pages on 14.4x over
10m / 5m, which spends 10 % of its budget.

An alert stops firing only once its condition has been false for ``keep_firing_for`` (by default
its short window): a burn hovering at the factor keeps one alert firing instead of resolving and
firing again every few evaluations (Prometheus' ``keep_firing_for``, :func:`hold`).

Everything here works on plain counts, so the Prometheus rules rendered by
:mod:`monitor.server.slo.render` and cvmon's own notifier (which reads per-minute counts from the
database) make the same decision: :func:`evaluate_alerts` is the reference implementation of the
PromQL condition.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

Severity = Literal["page", "ticket"]
SEVERITIES: Final[tuple[Severity, ...]] = ("page", "ticket")

MINUTE: Final = 60
HOUR: Final = 60 * MINUTE
DAY: Final = 24 * HOUR
WEEK: Final = 7 * DAY

#: The window the workbook's recipe is written for.
REFERENCE_WINDOW_S: Final = 30 * DAY

#: Default minimum *bad* events a page alert must be able to see before it may fire; the minimum
#: *event* count of each page alert is derived from it (see :func:`default_min_events`).
MIN_BAD_EVENTS_TO_PAGE: Final = 5

_UNITS: Final[dict[str, int]] = {"s": 1, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_DURATION = re.compile(r"([1-9][0-9]*)([smhdw])")


def parse_duration(text: str) -> int:
    """Seconds in a duration written as one whole number and a unit: ``90s``, ``5m``, ``12h``,
    ``30d``, ``4w``. Raises :class:`ValueError` otherwise (compound forms such as ``1h30m`` are
    refused so every window reads the same in cvmon.yaml, PromQL and alert labels)."""
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration like 5m, 12h, 30d or 4w")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    """The shortest exact ``<n><unit>`` spelling of a positive whole number of seconds.

    Days are the largest unit (``28d``, not ``4w``). The result is valid PromQL and round-trips
    through :func:`parse_duration`.
    """
    if seconds <= 0 or seconds != int(seconds):
        raise ValueError(f"a duration must be a positive whole number of seconds, not {seconds!r}")
    for unit in ("d", "h", "m"):
        size = _UNITS[unit]
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class AlertWindowSpec:
    """One row of a burn-rate recipe, before it is applied to an SLO.

    ``budget_fraction``: the share of the SLO window's error budget that, spent within
    ``long_window_s``, trips the alert. Windows are in seconds.
    """

    severity: Severity
    long_window_s: int
    short_window_s: int
    budget_fraction: float


#: The SRE Workbook's recipe for a 30-day SLO: 2 % of the budget in 1 h (14.4x) or 5 % in 6 h (6x)
#: pages; 10 % in 1 d (3x) or in 3 d (1x) opens a ticket. Short windows are 1/12 of the long ones.
WORKBOOK_RECIPE: Final[tuple[AlertWindowSpec, ...]] = (
    AlertWindowSpec("page", 1 * HOUR, 5 * MINUTE, 0.02),
    AlertWindowSpec("page", 6 * HOUR, 30 * MINUTE, 0.05),
    AlertWindowSpec("ticket", 1 * DAY, 2 * HOUR, 0.10),
    AlertWindowSpec("ticket", 3 * DAY, 6 * HOUR, 0.10),
)


@dataclass(frozen=True, slots=True)
class BurnAlert:
    """A multiwindow burn-rate alert, resolved for one SLO.

    It fires when the burn rate exceeds ``burn_rate`` over both the long and the short window and
    the long window holds at least ``min_events`` events, and keeps firing until that has been
    false for ``keep_firing_for``.
    """

    severity: Severity
    long_window_s: int
    short_window_s: int
    #: The factor: the burn rate both windows must exceed.
    burn_rate: float
    #: Share of the SLO window's budget spent over the long window when the alert trips.
    budget_fraction: float
    #: Low-event guard: events the long window must hold before the alert may fire (0: no guard).
    min_events: int
    #: Hysteresis: seconds the condition must stay false before the alert resolves (0: at once).
    #: None: the short window, the time the alert needs to see a recovery anyway.
    keep_firing_for_s: int | None = None

    @property
    def keep_firing_for(self) -> int:
        """Seconds the alert keeps firing after its condition stops holding."""
        return self.short_window_s if self.keep_firing_for_s is None else self.keep_firing_for_s

    @property
    def long_window(self) -> str:
        """The long window in PromQL spelling, e.g. ``1h`` (also the ``long_window`` label)."""
        return format_duration(self.long_window_s)

    @property
    def short_window(self) -> str:
        """The short window in PromQL spelling, e.g. ``5m`` (also the ``short_window`` label)."""
        return format_duration(self.short_window_s)


def error_budget(objective: float) -> float:
    """The fraction of events allowed to be bad: ``1 - objective`` (rounded off float dust, so
    ``error_budget(0.99)`` is exactly ``0.01``)."""
    if not 0.0 < objective < 1.0:
        raise ValueError(f"objective must be in (0, 1), not {objective!r}")
    return round(1.0 - objective, 12)


def burn_rate_factor(budget_fraction: float, slo_window_s: int, long_window_s: int) -> float:
    """The burn rate that spends ``budget_fraction`` of the budget within ``long_window_s``.

    >>> burn_rate_factor(0.02, 30 * DAY, HOUR)
    14.4
    """
    return round(budget_fraction * slo_window_s / long_window_s, 12)


def budget_fraction_for(burn_rate: float, slo_window_s: int, long_window_s: int) -> float:
    """The inverse of :func:`burn_rate_factor`: the budget share a burn rate spends in the window."""
    return round(burn_rate * long_window_s / slo_window_s, 12)


#: The shortest window a scaled recipe uses. Prometheus needs several scrapes inside a range for
#: ``increase()`` to answer (at least 4 scrape intervals, the usual advice), and Prometheus 3's
#: left-open ranges hold a single sample of a 1m scrape in a 1m range: 5m is safe for 1m scrapes.
MIN_SCALED_WINDOW_S: Final = 5 * MINUTE
#: A scaled long window is at least this many short windows, so the two still differ.
MIN_LONG_TO_SHORT: Final = 2
#: The shortest SLO window the built-in recipe serves. Below a day the window floors dominate: the
#: 10m / 5m page would wait for a fifth of a 12-hour budget; such SLOs state their alerts.
MIN_RECIPE_SLO_WINDOW_S: Final = DAY


def scale_window(reference_s: int, slo_window_s: int) -> int:
    """A recipe window for a 30-day SLO, scaled to ``slo_window_s`` and rounded to whole minutes,
    never below :data:`MIN_SCALED_WINDOW_S`."""
    return max(MIN_SCALED_WINDOW_S, round(reference_s * slo_window_s / REFERENCE_WINDOW_S / MINUTE) * MINUTE)


def scale_windows(spec: AlertWindowSpec, slo_window_s: int) -> tuple[int, int]:
    """(long, short) of a recipe row for a 30-day SLO, scaled to ``slo_window_s`` (Pyrra's way:
    in proportion, whole minutes) and kept apart: short at least :data:`MIN_SCALED_WINDOW_S`, long
    at least :data:`MIN_LONG_TO_SHORT` times short."""
    short = scale_window(spec.short_window_s, slo_window_s)
    long = max(scale_window(spec.long_window_s, slo_window_s), MIN_LONG_TO_SHORT * short)
    return long, short


def default_min_events(severity: Severity, burn_rate: float, objective: float) -> int:
    """The low-event guard a page gets unless cvmon.yaml sets ``min_events``.

    Why a guard: model-quality SLIs are counted when ground truth arrives, and labels are often
    sparse (a few reviewed images an hour). With 4 labelled predictions in the last hour, one bad
    label is a 25 % bad ratio, a 25x burn for a 99 % objective, and would page someone at night
    on no evidence. So a page needs enough events in its long window that the alert's threshold
    corresponds to at least :data:`MIN_BAD_EVENTS_TO_PAGE` (5) bad events, so paging takes more
    than five::

        min_events = ceil(5 / (burn_rate * (1 - objective)))

    e.g. 35 events per hour for the 14.4x page of a 99 % SLO, 84 per 6 hours for its 6x page,
    7 per hour for a 95 % SLO. Below that count the page stays quiet; tickets (no guard by
    default) still report the burn. With the SLI exactly on objective, the bad count at the guard
    is binomial with mean ``5 / burn_rate``, and the chance that one window alone looks like a
    page is at most about 2e-6 at 14.4x and 3e-4 at 6x for objectives from 95 % to 99.9 %
    (:func:`false_alarm_probability`).
    """
    if severity != "page":
        return 0
    return math.ceil(MIN_BAD_EVENTS_TO_PAGE / (burn_rate * error_budget(objective)) - 1e-9)


def default_alerts(objective: float, slo_window_s: int) -> tuple[BurnAlert, ...]:
    """The workbook's recipe applied to an SLO: windows scaled from 30 days to ``slo_window_s``
    (:func:`scale_windows`), the factors 14.4, 6, 3 and 1 kept, the default page guard, and each
    alert kept firing for its short window. Raises ValueError below
    :data:`MIN_RECIPE_SLO_WINDOW_S`."""
    if slo_window_s < MIN_RECIPE_SLO_WINDOW_S:
        raise ValueError(
            f"the built-in alerts need an SLO window of at least {format_duration(MIN_RECIPE_SLO_WINDOW_S)} "
            f"(not {format_duration(slo_window_s)}): below that their 5-minute windows would wait for too "
            "much of the budget; state the alerts of this SLO"
        )
    return tuple(
        resolve_alert(spec, objective=objective, slo_window_s=slo_window_s, scale=True)
        for spec in WORKBOOK_RECIPE
    )


def resolve_alert(
    spec: AlertWindowSpec,
    *,
    objective: float,
    slo_window_s: int,
    scale: bool = False,
    min_events: int | None = None,
) -> BurnAlert:
    """Apply one recipe row to an SLO. ``scale`` treats the row's windows as written for a 30-day
    SLO (the built-in recipe): they scale with the SLO window and the row's 30-day factor stays,
    so a window raised to its floor spends a larger share of the budget. Otherwise the windows and
    the budget share are taken as they are (windows from cvmon.yaml). ``min_events=None`` uses
    :func:`default_min_events`."""
    long_s, short_s = spec.long_window_s, spec.short_window_s
    fraction = spec.budget_fraction
    if scale:
        factor = burn_rate_factor(fraction, REFERENCE_WINDOW_S, long_s)
        long_s, short_s = scale_windows(spec, slo_window_s)
        fraction = budget_fraction_for(factor, slo_window_s, long_s)
    else:
        factor = burn_rate_factor(fraction, slo_window_s, long_s)
    guard = default_min_events(spec.severity, factor, objective) if min_events is None else min_events
    return BurnAlert(spec.severity, long_s, short_s, factor, fraction, guard, short_s)


def alert_problems(alert: BurnAlert, *, objective: float, slo_window_s: int) -> list[str]:
    """Why an alert cannot work as intended for this SLO (an empty list when it can).

    Checked: the short window is shorter than the long one, the long window fits in the SLO window,
    the factor is at least 1 (below 1 it fires while the budget is spent slower than it accrues),
    and the factor is reachable: ``burn_rate * (1 - objective) <= 1``, or even a total outage
    (every event bad) would never fire it, as with a 14.4x page on a 90 % objective.
    """
    problems: list[str] = []
    if alert.short_window_s >= alert.long_window_s:
        problems.append(
            f"short window {alert.short_window} must be shorter than long window {alert.long_window}"
        )
    if alert.long_window_s > slo_window_s:
        problems.append(
            f"long window {alert.long_window} is longer than the SLO window {format_duration(slo_window_s)}"
        )
    if alert.burn_rate < 1.0 - 1e-9:
        problems.append(
            f"burn rate {alert.burn_rate:g}x over {alert.long_window} is below 1x: it would alert while "
            "the budget is spent slower than it accrues"
        )
    budget = error_budget(objective)
    if alert.burn_rate * budget > 1.0 + 1e-9:
        problems.append(
            f"a {alert.burn_rate:g}x burn needs {alert.burn_rate * budget:.0%} bad events, impossible with "
            f"objective {objective:g}: even a total outage would never fire this {alert.severity}; use a "
            "smaller budget_fraction or burn_rate, or a longer long_window"
        )
    if alert.min_events < 0:
        problems.append(f"min_events must be >= 0, not {alert.min_events}")
    return problems


def detection_time_s(alert: BurnAlert, slo_window_s: int, burn: float) -> float | None:
    """Seconds until a constant ``burn`` trips ``alert``, starting from a window with no bad events.

    After ``t`` seconds of burn at a steady event rate, the long window's burn rate is
    ``burn * t / long_window``; it passes the factor at ``t = budget_fraction * slo_window / burn``
    (the workbook's "time to detect"). The short window passes sooner. Returns None when the alert
    never fires (``burn <= factor``). Assumes the event rate is high enough for the guard.
    """
    if burn <= alert.burn_rate:
        return None
    return alert.budget_fraction * slo_window_s / burn


def required_windows(alerts: Iterable[BurnAlert]) -> tuple[int, ...]:
    """Every window (seconds, ascending) whose event counts :func:`evaluate_alerts` needs."""
    return tuple(sorted({w for a in alerts for w in (a.long_window_s, a.short_window_s)}))


@dataclass(frozen=True, slots=True)
class WindowCounts:
    """Events and bad events counted over one window (of a model version, or summed over them)."""

    events: float
    bad: float


def error_ratio(counts: WindowCounts) -> float | None:
    """Bad events / events, or None without events (an empty window has no error ratio)."""
    if counts.events <= 0:
        return None
    return counts.bad / counts.events


def burn_rate(counts: WindowCounts, objective: float) -> float | None:
    """The burn rate over a window: error ratio / error budget (None without events)."""
    ratio = error_ratio(counts)
    return None if ratio is None else ratio / error_budget(objective)


def budget_remaining(counts: WindowCounts, objective: float) -> float:
    """Share of the error budget left, from the counts over the whole SLO window: 1 untouched,
    0 spent, negative overspent. Without events nothing is spent (1.0)."""
    rate = burn_rate(counts, objective)
    return 1.0 if rate is None else 1.0 - rate


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """The outcome of one :class:`BurnAlert` for one set of counts."""

    alert: BurnAlert
    firing: bool
    long_burn_rate: float | None
    short_burn_rate: float | None
    long_events: float
    #: True when both windows burn fast enough but the low-event guard holds the alert back.
    held_by_guard: bool


def evaluate_alerts(
    objective: float, alerts: Sequence[BurnAlert], counts: Mapping[int, WindowCounts]
) -> tuple[AlertDecision, ...]:
    """Decide every alert of one SLO from the event counts over each window.

    ``counts`` maps a window in seconds (every one of :func:`required_windows`) to the events and
    bad events counted over the last that many seconds, of one model version (or summed over
    versions, for an SLO that aggregates them). This is the condition the rendered
    ``CvmonErrorBudgetBurn`` rules evaluate: the burn rate must exceed the factor (strictly) over
    the long and over the short window, and the long window must hold at least ``min_events``
    events. A window without events never burns. ``firing`` is the condition at this evaluation;
    :func:`hold` adds the hysteresis.
    """
    decisions = []
    for alert in alerts:
        long_counts = counts[alert.long_window_s]
        long_rate = burn_rate(long_counts, objective)
        short_rate = burn_rate(counts[alert.short_window_s], objective)
        burning = (
            long_rate is not None
            and short_rate is not None
            and long_rate > alert.burn_rate
            and short_rate > alert.burn_rate
        )
        enough = long_counts.events >= alert.min_events
        decisions.append(
            AlertDecision(
                alert=alert,
                firing=burning and enough,
                long_burn_rate=long_rate,
                short_burn_rate=short_rate,
                long_events=long_counts.events,
                held_by_guard=burning and not enough,
            )
        )
    return tuple(decisions)


@dataclass(frozen=True, slots=True)
class AlertState:
    """What an alert remembers between evaluations: whether it fires, and since when its condition
    has been false while it kept firing (seconds on any clock; None while the condition holds)."""

    firing: bool = False
    quiet_since: float | None = None


QUIET: Final = AlertState()


def hold(alert: BurnAlert, state: AlertState, condition: bool, now: float) -> AlertState:
    """The alert's state after an evaluation at ``now`` (seconds) whose condition is ``condition``.

    The twin of Prometheus' ``keep_firing_for`` (2.42+): a firing alert whose condition stops
    holding keeps firing, and resolves at the first evaluation at least ``keep_firing_for``
    seconds after the first one that found it false; the condition holding again in between
    cancels that. There is no ``for:`` (pending) delay: it would add its length to every
    detection time, while the long window already demands a sustained burn.
    """
    if condition:
        return AlertState(True, None)
    if not state.firing:
        return QUIET
    since = now if state.quiet_since is None else state.quiet_since
    return AlertState(True, since) if now - since < alert.keep_firing_for else QUIET


def false_alarm_probability(events: int, objective: float, burn_rate: float) -> float:
    """P(the burn rate over ``events`` events exceeds ``burn_rate``) when each event is bad with
    probability exactly ``1 - objective`` (the SLI on objective): a binomial upper tail.

    Used to choose ``min_events``: the page guard should make this small at the guard's count.
    """
    budget = error_budget(objective)
    # Strictly more bad events than burn_rate * budget * events.
    threshold = math.floor(burn_rate * budget * events + 1e-9) + 1
    if threshold > events:
        return 0.0
    # Sum the upper tail directly (no 1 - x cancellation), term by term in log space.
    log_p, log_q = math.log(budget), math.log1p(-budget)
    return min(
        1.0,
        sum(
            math.exp(
                math.lgamma(events + 1)
                - math.lgamma(k + 1)
                - math.lgamma(events - k + 1)
                + k * log_p
                + (events - k) * log_q
            )
            for k in range(threshold, events + 1)
        ),
    )
