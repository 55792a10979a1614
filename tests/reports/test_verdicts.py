"""Verdicts, notable changes and actions: pure functions of hand-built report data."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

import pytest

from monitor.server.reports import fmt
from monitor.server.reports.data import ClassRow, DriftHit, WeekValue, chance_of_flags
from monitor.server.reports.render import render_report
from monitor.server.reports.verdicts import (
    build_actions,
    calibration_verdict,
    drift_verdict,
    labels_to_measure,
    notable_changes,
    service_verdict,
    summary_verdict,
    verdicts,
)
from monitor.server.reports.views import class_mix, confused_pairs, proportion_z, rank_cohorts, significant_share_change
from tests.reports.factory import DAY, HOUR, WEEK_START, cohort, drift_trend, report, slo, version

CAM3_DRIFT = DriftHit("mmd", "embedding", WEEK_START + DAY + 14 * HOUR, 40, 168)


def quiet():
    """A week where nothing happened: same numbers as last week, no drift, budgets healthy."""
    data = report(10)
    steady = tuple(replace(c, recall=replace(c.recall, previous=c.recall.current)) for c in data.classes)
    return replace(
        data,
        overall=WeekValue(0.95, 0.95, 7_200, 7_100),
        classes=tuple(c for c in steady if c.recall.n >= 30),
        cohorts=(cohort("cam-1", 0.95, 0.95), cohort("cam-2", 0.94, 0.95)),
        drift=(drift_trend(None),),
        slos=(slo(),),
        versions=(
            version(primary=WeekValue(0.95, 0.95, 7_200, 7_100), calibration=WeekValue(0.02, 0.02, 7_200, 7_100)),
        ),
    )


def test_the_drifted_camera_gets_the_runbook_action_first_after_spent_budgets():
    actions = build_actions(report(10, slos=(slo(),)))
    first = actions[0]
    assert first.urgency == "now"
    assert first.text == (
        "Accuracy fell 16.0 points on camera cam-3 (n=1\u202f240); drift detected on its embeddings since Tue 14:00 — "
        "check the camera (position, focus, exposure, firmware) and that its frames arrive intact, then label 300 recent cam-3 images."
    )


def test_a_spent_error_budget_is_the_first_thing_to_do():
    actions = build_actions(report(10))
    assert actions[0].urgency == "now" and actions[0].text.startswith(
        "SLO digits-latency: its error budget is spent (−10% of the 30d budget left)"
    )
    assert [a.urgency for a in actions] == sorted(
        (a.urgency for a in actions), key=["now", "this week", "when convenient"].index
    )


def test_a_quiet_week_says_so_and_asks_for_nothing():
    data = quiet()
    v = verdicts(data)
    assert v.changes == ()
    assert v.summary == "All 1 SLOs are within their error budget; nothing changed significantly since last week."
    assert v.actions == () and v.actions_line == "Nothing needs action this week."
    assert v.drift.startswith("No detector flagged drift this week (1 detector, 84 scored windows)")


def test_the_summary_names_spent_budgets_and_the_biggest_change():
    text = summary_verdict(report(10), notable_changes(report(10)))
    assert text == (
        "1 of 2 SLOs have spent their error budget (digits-latency); "
        "biggest change: accuracy on camera cam-3 fell 16.0 points to 79.0% (n=1\u202f240)."
    )


def test_a_fall_on_too_few_labels_is_not_a_change():
    data = replace(quiet(), cohorts=(cohort("cam-9", 0.5, 0.95, n=20),))
    assert notable_changes(data) == ()
    assert not significant_share_change(data.cohorts[0].primary)


def test_drift_with_too_few_labels_asks_for_labels_this_week():
    data = replace(quiet(), cohorts=(cohort("cam-3", 0.9, 0.95, n=12, drift=(CAM3_DRIFT,)),))
    (action,) = [a for a in build_actions(data) if "cam-3" in a.text]
    assert action.urgency == "this week"
    assert action.text.startswith(
        "Camera cam-3: drift detected on its embeddings since Tue 14:00, and its accuracy cannot be judged yet (n=12)"
    )
    assert "label 150 recent cam-3 images" in action.text


def test_drift_without_a_quality_drop_is_a_ticket_not_a_page():
    data = replace(quiet(), cohorts=(cohort("cam-3", 0.95, 0.95, drift=(CAM3_DRIFT,)),))
    (action,) = [a for a in build_actions(data) if "cam-3" in a.text]
    assert action.urgency == "when convenient" and "its accuracy held (95.0%, n=1\u202f240)" in action.text


def test_drift_on_a_version_without_cohort_drift_points_at_the_cohort_table():
    data = replace(quiet(), drift=(drift_trend(38),))
    (action,) = build_actions(data)
    assert action.urgency == "this week"
    assert action.text.startswith("Version mlp-v1: drift detected on its embeddings since Tue 14:00 (mmd:embedding)")


def test_a_class_mix_change_alone_asks_to_confirm_before_retraining():
    data = replace(quiet(), drift=(drift_trend(38, "chi_square:class_mix"),))
    (action,) = build_actions(data)
    assert action.urgency == "when convenient" and "confirm with the product owner" in action.text


def test_classes_with_too_few_labels_say_where_to_send_labelling_effort():
    data = replace(quiet(), classes=report(10).classes)  # the last three classes have 5, 2 and 0 labels
    (action,) = [a for a in build_actions(data) if a.text.startswith("Too few labels")]
    assert action.text.startswith(
        "Too few labels to judge 3 classes (under 30 this week): label about 83 more images, starting with 'class-009' (0), 'class-008' (2) and 'class-007' (5)."
    )


def test_classes_nobody_labelled_nor_predicted_are_counted_apart():
    never = ClassRow("ghost", WeekValue(None), WeekValue(None))
    few = ClassRow("rare", WeekValue(1.0, None, 3, 0), WeekValue(1.0, None, 3, 0))
    (action,) = build_actions(replace(quiet(), classes=(*quiet().classes, never, few)))
    assert (
        "'rare' (3)" in action.text
        and "ghost" not in action.text
        and "1 more class had no labelled sample at all" in action.text
    )


@pytest.mark.parametrize(
    ("ece", "expected"),
    [
        pytest.param(0.03, "ECE 0.030: confidences match the observed accuracy (target below 0.05).", id="calibrated"),
        pytest.param(
            0.09,
            "ECE 0.090 is above the 0.05 target: the model is overconfident by 4.0 points on average;",
            id="overconfident",
        ),
    ],
)
def test_the_calibration_verdict_reads_the_ece_against_the_runbook_target(ece, expected):
    data = replace(report(10), versions=(version(calibration=WeekValue(ece, 0.02, 7_200, 7_100)),))
    assert calibration_verdict(data).startswith(expected)


def test_calibration_above_target_asks_for_recalibration():
    data = replace(
        quiet(),
        versions=(
            version(calibration=WeekValue(0.09, 0.02, 7_200, 7_100), primary=WeekValue(0.95, 0.95, 7_200, 7_100)),
        ),
    )
    (action,) = build_actions(data)
    assert action.urgency == "when convenient" and "temperature scaling" in action.text


def test_without_drift_results_the_drift_verdict_says_it_has_not_run():
    assert drift_verdict(replace(report(10), drift=(), cohorts=())).startswith("No drift results for this week")


@pytest.mark.parametrize(
    ("rate", "urgency"),
    [pytest.param(0.02, "this week", id="above-1-percent"), pytest.param(0.06, "now", id="above-5-percent")],
)
def test_serving_errors_above_one_percent_are_an_action(rate, urgency):
    data = replace(quiet(), versions=(replace(quiet().versions[0], error_rate=WeekValue(rate, 0.001, 12_000, 11_800)),))
    (action,) = build_actions(data)
    assert action.urgency == urgency and action.text.startswith(
        f"Error rate of mlp-v1 is {fmt.pct(rate, 2)} (target below 1%)"
    )
    assert service_verdict(data).endswith("; the error rate is above the 1% target.")


def test_a_latency_rise_of_a_fifth_is_a_change_and_an_action():
    data = replace(
        quiet(), versions=(replace(quiet().versions[0], latency_p95_ms=WeekValue(27.0, 20.0, 12_000, 11_800)),)
    )
    (change,) = notable_changes(data)
    assert (change.what, change.text, change.worse) == ("p95 latency of mlp-v1", "rose 35% to 27 ms", True)
    (action,) = build_actions(data)
    assert action.text.startswith("p95 latency of mlp-v1 rose 35% to 27 ms")


def test_detection_models_speak_of_map_as_a_score():
    data = replace(
        quiet(),
        task="detection",
        overall=WeekValue(0.41, 0.47, 800, 790),
        cohorts=(cohort("cam-3", 0.30, 0.45, n=300, drift=(CAM3_DRIFT,)),),
        classes=(),
        reliability=(),
    )
    actions = build_actions(data)
    assert actions[0].text.startswith("mAP fell 0.150 on camera cam-3 (n=300)")
    assert "label 400 recent cam-3 images" in actions[0].text  # no accuracy to size the sample: p = 0.5


@pytest.mark.parametrize(
    ("accuracy", "labels"),
    [
        pytest.param(None, 400, id="unknown"),
        pytest.param(0.5, 400, id="half"),
        pytest.param(0.85, 200, id="good"),
        pytest.param(0.999, 100, id="clipped-at-95-percent"),
        pytest.param(0.99, 100, id="clipped"),
    ],
)
def test_labels_to_measure_a_slice_to_five_points(accuracy, labels):
    assert labels_to_measure(accuracy) == labels


def test_the_z_statistic_matches_the_two_proportion_test():
    value = WeekValue(0.80, 0.90, 400, 500)
    pooled = (0.8 * 400 + 0.9 * 500) / 900
    assert proportion_z(value) == pytest.approx(-0.1 / math.sqrt(pooled * (1 - pooled) * (1 / 400 + 1 / 500)))
    assert proportion_z(WeekValue(0.8, 0.9, 29, 500)) is None


def test_cohorts_in_need_of_attention_come_first():
    data = report(10)
    assert [c.value for c in rank_cohorts(data)] == ["cam-3", "cam-2", "cam-1"]


def test_class_mix_and_confused_pairs_are_ordered_by_size():
    data = report(10)
    pairs = confused_pairs(data.confusion, top=3)
    assert [p.count for p in pairs] == sorted((p.count for p in pairs), reverse=True) and all(
        p.true != p.predicted for p in pairs
    )
    assert class_mix(data) == ()  # the factory's shares held: nothing listed
    every = class_mix(data, top=100, min_change=0.0)
    assert len(every) == 10 and sum(m.predicted.current for m in every) == pytest.approx(1.0)
    moved = replace(
        data,
        classes=(
            replace(data.classes[0], precision=replace(data.classes[0].precision, previous_n=1)),
            *data.classes[1:],
        ),
    )
    assert class_mix(moved)[0].name == data.classes[0].name


def test_every_week_boundary_time_is_utc():
    assert fmt.when(WEEK_START + DAY + 14 * HOUR) == "Tue 14:00"
    assert fmt.day(WEEK_START + 6 * DAY) == "Sun 22 Nov 2026"
    assert WEEK_START + 7 * DAY - timedelta(microseconds=1) < report(10).period_end


@pytest.mark.parametrize(
    ("flagged", "scored", "alpha", "drifted"),
    [
        pytest.param(1, 168, 0.01, False, id="one-flagged-hour-is-noise"),
        pytest.param(5, 168, 0.01, False, id="five-of-168-hours-within-chance"),
        pytest.param(6, 168, 0.01, True, id="six-of-168-hours-is-drift"),
        pytest.param(1, 7, 0.01, False, id="one-flagged-day-is-noise"),
        pytest.param(2, 7, 0.01, True, id="two-flagged-days-are-drift"),
        pytest.param(6, 168, 0.05, False, id="a-looser-detector-needs-more-flags"),
    ],
)
def test_drift_is_flags_beyond_the_detectors_false_alarm_rate(flagged, scored, alpha, drifted):
    hit = DriftHit("ks", "confidence", WEEK_START, flagged, scored, alpha)
    assert hit.drifted is drifted
    assert chance_of_flags(flagged, scored, alpha) == pytest.approx(
        sum(math.comb(scored, k) * alpha**k * (1 - alpha) ** (scored - k) for k in range(flagged, scored + 1))
    )


def test_isolated_flags_are_reported_as_such_and_ask_for_nothing():
    noise = DriftHit("ks", "confidence", WEEK_START + 3 * DAY, 1, 168)
    data = replace(quiet(), cohorts=(cohort("cam-1", 0.95, 0.95, drift=(noise,)),))
    assert drift_verdict(data).startswith("No persistent drift this week: 1 isolated flag in 84 scored windows")
    assert build_actions(data) == ()
    assert "ks:confidence: 1 isolated" in render_report(data)


def test_a_cohort_far_below_its_version_is_an_action_even_without_last_week():
    data = replace(quiet(), cohorts=(cohort("cam-7", 0.30, None, n=2_400), cohort("cam-1", 0.95, 0.95)))
    assert [c.value for c in rank_cohorts(data)] == ["cam-7", "cam-1"]
    (action,) = build_actions(data)
    assert action.urgency == "this week"
    assert action.text.startswith(
        "Accuracy on camera cam-7 is 65.0 points below mlp-v1 as a whole (30.0% vs 95.0%, n=2\u202f400) — check the camera"
    )


def test_the_service_verdict_says_what_1000_inferences_cost():
    assert service_verdict(quiet()) == (
        "Latency p95 21 ms (+5% vs last week), error rate 0.10%, 0.0508 USD per 1\u202f000 inferences over 12\u202f000 predictions."
    )
    unpriced = replace(quiet(), versions=(version(cost_per_1k=WeekValue(None)),), currency=None)
    assert "inferences" not in service_verdict(unpriced)


def test_the_label_verdict_names_the_class_annotators_agree_on_least():
    from monitor.server.reports.verdicts import labels_verdict

    assert labels_verdict(quiet()) == (
        "Annotators agreed on 88.0% of label pairs over 600 predictions with two or more annotators "
        "(Krippendorff's alpha 0.74, 0.78 last week); 96 were disputed, most often over 'class-004' "
        "(61.0% of its labels agreed)."
    )
    assert labels_verdict(replace(quiet(), labels=None)) == ""


def test_annotators_who_agree_little_are_an_action_before_the_metrics_are_trusted():
    from tests.reports.factory import label_quality

    assert build_actions(quiet()) == ()  # alpha 0.74: tentative conclusions hold
    low = replace(quiet(), labels=label_quality(alpha=0.55))
    (action,) = build_actions(low)
    assert action.urgency == "this week" and action.text.startswith(
        "Annotators agree little (Krippendorff's alpha 0.55 over 600 multiply-annotated predictions, below 0.667), "
        "above all on 'class-004' and 'class-007'"
    )
    # too few multiply-annotated predictions to say
    assert build_actions(replace(quiet(), labels=label_quality(alpha=0.2, items=12))) == ()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0508333, "0.0508 USD"),
        (0.00725, "0.00725 USD"),
        (12.44, "12.4 USD"),
        (1240.4, "1\u202f240 USD"),
        (0.0, "0 USD"),
        (None, "–"),
    ],
)
def test_money_keeps_three_significant_digits(value, text):
    assert fmt.money(value, "USD") == text
