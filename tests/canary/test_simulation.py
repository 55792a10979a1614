"""The canary gate's guarantees, by seeded simulation of a day polled every minute.

Every simulation runs cvmon's decision code (``judge_summaries`` and ``verdict`` of
monitor.server.services.canary) on the cumulative evidence after each minute, with the default
``canary:`` policy: five gating metrics, α = 0.05 for the verdict. Run with ``-s`` to see the
figures the tests print.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from detectors import sequential as seq
from monitor.server.rollout_config import CanaryPolicy
from tests.canary.simulation import Arm, first_fail, fixed_verdicts, rate, simulate

DAY = 24 * 60
POLICY = CanaryPolicy()
#: every gate at tolerance 0: fail on any regression the evidence shows (identical versions sit on
#: the boundary of what must not fail, where a test re-checked at every poll errs most)
STRICT = CanaryPolicy(gates={name: (0.0 if tol is not None else None) for name, tol in POLICY.gates.items()})
#: a 25 % canary: the candidate serves a third of what the baseline serves
BASELINE = Arm(predictions_per_minute=30, labels_per_minute=3)
CANDIDATE = Arm(predictions_per_minute=10, labels_per_minute=3)


def _identical_runs(runs: int, seed: int) -> tuple[int, int]:
    anytime = fixed = 0
    for run in range(runs):
        a, b, judgements, verdicts = simulate(BASELINE, CANDIDATE, STRICT, minutes=DAY, seed=seed + run)
        anytime += first_fail(verdicts) is not None
        fixed += first_fail(fixed_verdicts(a, b, judgements, STRICT)) is not None
    return anytime, fixed


def test_identical_versions_polled_every_minute_for_a_day_fail_at_most_alpha():
    """Fast and seeded: 12 runs of 1 440 polls, every gate at tolerance 0. The fixed-horizon tests
    on the same data, at the same α shares, fail several of these healthy canaries (the slow test
    below measures both rates on 150 runs, or CVMON_CANARY_RUNS)."""
    runs = 12
    anytime, fixed = _identical_runs(runs, seed=1000)
    print(f"\nidentical versions, {runs} runs x {DAY} polls (alpha {STRICT.alpha}, tolerance 0): "
          f"anytime-valid false-fail rate {rate(anytime, runs)}; fixed-horizon at every poll {rate(fixed, runs)}")  # fmt: skip
    assert anytime / runs <= STRICT.alpha
    assert fixed / runs >= 3 * STRICT.alpha


@pytest.mark.slow
def test_identical_versions_many_runs():
    """150 runs in the suite's time; CVMON_CANARY_RUNS=400 gave the figure in docs/canary.md."""
    runs = int(os.environ.get("CVMON_CANARY_RUNS", "150"))
    anytime, fixed = _identical_runs(runs, seed=5000)
    print(f"\nidentical versions, {runs} runs x {DAY} polls (alpha {STRICT.alpha}, tolerance 0): "
          f"anytime-valid false-fail rate {rate(anytime, runs)}; fixed-horizon at every poll {rate(fixed, runs)}")  # fmt: skip
    assert anytime / runs <= STRICT.alpha
    assert fixed / runs >= 5 * STRICT.alpha


@pytest.mark.slow
def test_candidate_three_points_worse_in_accuracy_is_failed():
    """Accuracy 0.90 against 0.87, labels at 20 a minute for each version, everything else equal:
    every run fails the candidate on accuracy within the day. Printed: labels per version at the
    failing poll, beside the sample size a fixed-horizon test would be planned with (same α share
    and tolerance, power 0.8)."""
    runs = 20
    baseline = Arm(predictions_per_minute=40, labels_per_minute=20)
    candidate = Arm(predictions_per_minute=40, labels_per_minute=20, accuracy=0.87)
    labels = []
    for run in range(runs):
        _, b, judgements, verdicts = simulate(baseline, candidate, POLICY, minutes=DAY, seed=2000 + run)
        minute = first_fail(verdicts)
        assert minute is not None, f"run {run}: not failed in a day"
        failing = [j.metric for j in judgements if j.gating and j.decision[minute] == seq.FAIL]
        assert failing == ["accuracy"], failing
        labels.append(int(b.labelled[minute]))
    share = POLICY.alpha / sum(j.gating for j in judgements)
    planned = seq.fixed_sample_size(0.90, 0.87, tolerance=POLICY.gates["accuracy"] or 0.0, alpha=share, power=0.8)
    print(f"\n3-point accuracy regression (tolerance {POLICY.gates['accuracy']}, alpha share {share:.3f}): failed after "
          f"{int(np.median(labels))} labels per version (median of {runs}; {min(labels)}-{max(labels)}); "
          f"a fixed-horizon test planned for power 0.8 needs {planned}")  # fmt: skip


def test_candidate_with_shifted_confidences_is_failed_before_any_label():
    runs = 20
    baseline = Arm(predictions_per_minute=30, labels_per_minute=0)
    candidate = Arm(predictions_per_minute=10, labels_per_minute=0, confidence_a=3.0)
    minutes = []
    for run in range(runs):
        _, b, judgements, verdicts = simulate(baseline, candidate, POLICY, minutes=240, seed=3000 + run)
        minute = first_fail(verdicts)
        assert minute is not None
        assert int(b.labelled[minute]) == 0
        assert "confidence" in [j.metric for j in judgements if j.gating and j.decision[minute] == seq.FAIL]
        minutes.append(minute + 1)
    print(f"\nconfidences Beta(3,1) against Beta(6,1), no labels: failed after {int(np.median(minutes))} minutes "
          f"({10 * int(np.median(minutes))} candidate predictions; median of {runs})")  # fmt: skip
