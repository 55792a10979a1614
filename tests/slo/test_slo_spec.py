"""The SLO spec in cvmon.yaml: what it accepts, and errors that point at the line."""

from __future__ import annotations

import textwrap

import pytest

from monitor.errors import ConfigError
from monitor.server.slo.burnrate import DAY, HOUR, MINUTE
from monitor.server.slo.spec import SLO, load_slos
from tests.slo.conftest import EXAMPLE


def load(text: str) -> tuple[SLO, ...]:
    return load_slos(textwrap.dedent(text), source="cvmon.yaml")


def test_example_config_loads(example_slos: tuple[SLO, ...]) -> None:
    by_name = {s.name: s for s in example_slos}
    assert len(by_name) == len(example_slos) == 15
    assert {s.sli for s in example_slos} == {
        "latency",
        "availability",
        "accuracy",
        "precision",
        "recall",
        "ece",
        "drift",
        "map",
        "cost",
        "label_quality",
    }
    recall = by_name["digits-recall-7"]
    assert (recall.class_name, recall.window, recall.objective) == ("7", "7d", 0.95)
    assert by_name["digits-accuracy-cam-3"].cohort == (("camera", "cam-3"),)
    assert by_name["digits-latency"].threshold == 0.05
    # the line of the SLO's `- name:` in the file, for error messages that point at it
    lines = EXAMPLE.read_text("utf-8").splitlines()
    assert lines[by_name["digits-latency"].line - 1].strip() == "- name: digits-latency"
    assert by_name["shelf-detector-map"].time_slice and not by_name["digits-accuracy"].time_slice
    assert [a.severity for a in by_name["digits-drift"].alerts] == ["ticket", "ticket"]
    assert by_name["digits-latency"].per_version and not by_name["shelf-detector-availability"].per_version
    assert [(a.long_window, a.short_window) for a in by_name["digits-latency-1d"].alerts][:2] == [
        ("10m", "5m"), ("12m", "5m"),
    ]  # fmt: skip

    # a cost SLO without alerting gets the recipe's tickets only: 3x over 1d / 2h, 1x over 3d / 6h
    cost = by_name["digits-cost"]
    assert cost.time_slice and not cost.lower_bound
    assert [(a.severity, a.long_window, a.short_window, a.burn_rate) for a in cost.alerts] == [
        ("ticket", "1d", "2h", pytest.approx(3.0)), ("ticket", "3d", "6h", pytest.approx(1.0))]  # fmt: skip
    quality = by_name["digits-label-quality"]
    assert (quality.metric, quality.threshold, quality.min_samples, quality.lower_bound) == ("krippendorff_alpha", 0.667, 20, True)

def test_per_version_and_keep_firing_for() -> None:
    a, b = load(
        """\
        slo_alerting:
          per_version: false
        slos:
          - {name: a, model: m, sli: accuracy, objective: 0.99, window: 30d}
          - name: b
            model: m
            sli: accuracy
            objective: 0.99
            window: 30d
            alerting:
              per_version: true
              alerts:
                - {severity: page, long_window: 1h, short_window: 5m, budget_fraction: 0.02}
                - {severity: page, long_window: 6h, short_window: 30m, budget_fraction: 0.05, keep_firing_for: 1h}
                - {severity: ticket, long_window: 3d, short_window: 6h, burn_rate: 1, keep_firing_for: 0}
        """
    )
    assert not a.per_version and b.per_version
    assert [x.keep_firing_for for x in a.alerts] == [300, 1800, 7200, 21600]  # the short windows
    assert [x.keep_firing_for for x in b.alerts] == [300, 3600, 0]


def test_minimal_slo_gets_the_workbook_recipe() -> None:
    (slo,) = load(
        """
        slos:
          - {name: a, model: m, sli: availability, objective: 0.99, window: 30d}
        """
    )
    assert slo.window_s == 30 * DAY and slo.error_budget == 0.01
    assert [(a.long_window_s, a.short_window_s, a.burn_rate, a.min_events) for a in slo.alerts] == [
        (HOUR, 5 * MINUTE, 14.4, 35),
        (6 * HOUR, 30 * MINUTE, 6.0, 84),
        (DAY, 2 * HOUR, 3.0, 0),
        (3 * DAY, 6 * HOUR, 1.0, 0),
    ]


def test_no_slos_key_means_no_slos() -> None:
    assert load("database_url: sqlite:///x.db\n") == ()
    assert load("") == ()


def test_class_may_be_a_bare_number_and_keeps_its_spelling() -> None:
    (slo,) = load(
        """
        slos:
          - {name: r, model: m, sli: recall, class: 07, objective: 0.9, window: 30d,
             alerting: {alerts: [{severity: ticket, long_window: 3d, short_window: 6h, burn_rate: 1}]}}
        """
    )
    assert slo.class_name == "07"


def test_global_min_events_applies_to_pages_and_per_slo_overrides_it() -> None:
    a, b = load(
        """
        slo_alerting:
          min_events: 50
        slos:
          - {name: a, model: m, sli: accuracy, objective: 0.99, window: 30d}
          - {name: b, model: m, sli: accuracy, objective: 0.99, window: 30d, alerting: {min_events: 10}}
        """
    )
    assert [x.min_events for x in a.alerts] == [50, 50, 0, 0]
    assert [x.min_events for x in b.alerts] == [10, 10, 0, 0]


def test_alert_entries_take_a_budget_fraction_or_a_burn_rate() -> None:
    (slo,) = load(
        """
        slo_alerting:
          alerts:
            - {severity: page, long_window: 2h, short_window: 10m, budget_fraction: 0.04}
            - {severity: ticket, long_window: 3d, short_window: 6h, burn_rate: 1.5, min_events: 100}
        slos:
          - {name: a, model: m, sli: accuracy, objective: 0.99, window: 7d}
        """
    )
    page, ticket = slo.alerts
    assert page.burn_rate == pytest.approx(0.04 * 7 * 24 / 2)  # 3.36x
    assert page.min_events == 149  # ceil(5 / (3.36 * 0.01))
    assert ticket.burn_rate == 1.5
    assert ticket.budget_fraction == pytest.approx(1.5 * 3 / 7)
    assert ticket.min_events == 100


# Each case: the document, the 1-based line the error must point at, a piece of the message.
BAD = [
    pytest.param("slos: {a: 1}\n", 1, "must be a list", id="slos-not-a-list"),
    pytest.param("slos:\n  - name: a\n    model: m\n", 2, "needs sli", id="missing-key"),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n    treshold: 1\n",
        7,
        "did you mean 'threshold'",
        id="unknown-key-with-suggestion",
    ),
    pytest.param(
        "slos:\n  - {name: a, model: m, sli: accuracy, objective: 0.99, window: 30d}\n"
        "  - {name: a, model: m, sli: latency, threshold: 1, objective: 0.99, window: 30d}\n",
        3,
        "already used on line 2",
        id="duplicate-name",
    ),
    pytest.param(
        "slos:\n  - name: 'has space'\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n",
        2,
        "Prometheus label value",
        id="name-not-label-safe",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: f1\n    objective: 0.99\n    window: 30d\n",
        4,
        "latency | availability | accuracy",
        id="unknown-sli",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 99\n    window: 30d\n",
        5,
        "strictly between 0 and 1",
        id="objective-as-percent",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 1\n    window: 30d\n",
        5,
        "strictly between 0 and 1",
        id="objective-one",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: high\n    window: 30d\n",
        5,
        "must be a number",
        id="objective-not-a-number",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 1 month\n",
        6,
        "like 5m, 12h, 30d or 4w",
        id="window-unparsable",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30m\n",
        6,
        "at least 1h",
        id="window-too-short",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: recall\n    objective: 0.99\n    window: 30d\n",
        2,
        "needs class",
        id="recall-without-class",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    class: cat\n    objective: 0.99\n    window: 30d\n",
        5,
        "class applies only to precision and recall",
        id="class-on-accuracy",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: latency\n    objective: 0.99\n    window: 30d\n",
        2,
        "needs threshold",
        id="latency-without-threshold",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: ece\n    threshold: 5\n    objective: 0.99\n    window: 30d\n",
        5,
        "fraction in (0, 1)",
        id="ece-threshold-not-a-fraction",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    threshold: 0.2\n    objective: 0.99\n    window: 30d\n",
        5,
        "threshold applies only to",
        id="threshold-on-accuracy",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n    cohort: {model: x}\n",
        7,
        "cohort key 'model'",
        id="cohort-shadows-a-label",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.9\n    window: 30d\n",
        5,
        "even a total outage would never fire",
        id="page-unreachable-at-90-percent",
    ),
    pytest.param(
        "slo_alerting:\n  per_version: maybe\n",
        2,
        "slo_alerting.per_version must be true or false",
        id="per-version-not-a-bool",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 7d\n    alerting:\n"
        "      alerts:\n        - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4, keep_firing_for: soon}\n",
        9,
        "keep_firing_for: 'soon' is not a duration",
        id="keep-firing-for-not-a-duration",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 12h\n",
        6,
        "the built-in alerts serve SLO windows of 1d or more, not 12h: set alerting.alerts",
        id="window-too-short-for-default-recipe",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 7d\n    alerting:\n"
        "      alerts:\n        - {severity: ticket, long_window: 3d, short_window: 6h, budget_fraction: 0.1}\n",
        9,
        "below 1x",
        id="entry-factor-below-1",
    ),
    pytest.param(
        "slo_alerting:\n  alerts:\n    - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4}\n"
        "slos:\n  - {name: a, model: m, sli: accuracy, objective: 0.9, window: 30d}\n",
        3,
        "inherited from slo_alerting",
        id="inherited-entry-unreachable",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n    alerting:\n"
        "      alerts:\n        - {severity: page, long_window: 1h, short_window: 5m}\n",
        9,
        "exactly one of budget_fraction or burn_rate",
        id="entry-without-factor",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n    alerting:\n"
        "      alerts:\n        - {severity: urgent, long_window: 1h, short_window: 5m, burn_rate: 2}\n",
        9,
        "page or ticket",
        id="entry-bad-severity",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n    alerting:\n"
        "      alerts:\n        - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 14.4}\n"
        "        - {severity: page, long_window: 1h, short_window: 5m, burn_rate: 10}\n",
        10,
        "already defined on line 9",
        id="entry-duplicate",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n    alerting:\n"
        "      min_events: -3\n",
        8,
        "whole number >= 0",
        id="negative-min-events",
    ),
    pytest.param(
        "slos:\n  - name: a\n    name: b\n",
        3,
        "appears twice",
        id="duplicate-key",
    ),
    pytest.param("slos:\n  - name: a\n    model: [m\n", 4, "not valid YAML", id="yaml-syntax"),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: accuracy\n    objective: 0.99\n    window: 30d\n    detector: psi\n",
        7,
        "detector applies only to drift",
        id="detector-on-accuracy",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: cost\n    objective: 0.95\n    window: 30d\n",
        2,
        "needs threshold: the largest acceptable cost per 1 000 inferences",
        id="cost-without-threshold",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: label_quality\n    threshold: 95\n    objective: 0.9\n    window: 30d\n",
        5,
        "threshold for label_quality is a fraction in (0, 1)",
        id="label-quality-threshold-as-percent",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: label_quality\n    metric: kappa\n    threshold: 0.8\n"
        "    objective: 0.9\n    window: 30d\n",
        5,
        "metric must be one of label_agreement | krippendorff_alpha, not 'kappa'",
        id="label-quality-unknown-metric",
    ),
    pytest.param(
        "slos:\n  - name: a\n    model: m\n    sli: cost\n    metric: label_agreement\n    threshold: 0.8\n"
        "    objective: 0.9\n    window: 30d\n",
        5,
        "metric applies only to label_quality, not cost",
        id="metric-on-cost",
    ),
]


@pytest.mark.parametrize(("text", "line", "message"), BAD)
def test_errors_point_at_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_slos(text, source="cvmon.yaml")
    err = info.value
    assert (err.source, err.line) == ("cvmon.yaml", line), str(err)
    assert str(err).startswith(f"cvmon.yaml:{line}: ")
    assert message in str(err)


def test_label_quality_bounds_percent_agreement_unless_told_otherwise() -> None:
    (plain, alpha) = load(
        """
        slos:
          - {name: q, model: m, sli: label_quality, objective: 0.9, window: 30d, threshold: 0.95,
             alerting: {alerts: [{severity: ticket, long_window: 1d, short_window: 2h, budget_fraction: 0.1}]}}
          - {name: a, model: m, sli: label_quality, metric: krippendorff_alpha, objective: 0.9, window: 30d,
             threshold: 0.8, alerting: {alerts: [{severity: ticket, long_window: 1d, short_window: 2h, burn_rate: 3}]}}
        """
    )
    assert (plain.metric, plain.lower_bound, plain.time_slice) == ("label_agreement", True, True)
    assert alpha.metric == "krippendorff_alpha"


def test_a_cost_slo_pages_only_when_told_to() -> None:
    (default, paging) = load(
        """
        slos:
          - {name: c, model: m, sli: cost, objective: 0.95, window: 7d, threshold: 0.02}
          - {name: p, model: m, sli: cost, objective: 0.95, window: 30d, threshold: 0.02,
             alerting: {alerts: [{severity: page, long_window: 6h, short_window: 30m, budget_fraction: 0.05}]}}
        """
    )
    assert {a.severity for a in default.alerts} == {"ticket"} and len(default.alerts) == 2
    assert [a.severity for a in paging.alerts] == ["page"]
