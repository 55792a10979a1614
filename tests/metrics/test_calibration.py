"""Calibration metrics against torchmetrics and netcal, and the exact merge of their state.

torchmetrics bins and sums in float32, so it is compared at sizes where float32 is exact to
1e-6; netcal works in float64 and is compared to 1e-9 on float64 input. netcal clips
confidences to [eps, 1 - eps], so the netcal cases keep every confidence below 1 - eps (a
confidence of exactly 1 is torchmetrics' own bin; see the one-hot case).
"""

from __future__ import annotations

import numpy as np
import pytest

from monitor.metrics import (
    CalibrationState,
    calibration_metrics,
    calibration_state,
    calibration_state_from_confidences,
    classification_state,
    probability_states,
)
from monitor.metrics._scan import torch_edges
from testkit.synth import classification_like

from ._oracles import netcal_ece, netcal_mce, torchmetrics_classwise_ece, torchmetrics_ece

TORCH_CASES = [
    pytest.param(1, 4000, 10, 15, 1.6, id="10-classes-15-bins"),
    pytest.param(2, 10000, 100, 15, 2.5, id="100-classes-overconfident"),
    pytest.param(3, 3000, 5, 10, 0.7, id="5-classes-10-bins-underconfident"),
    pytest.param(4, 2000, 3, 20, 1.0, id="3-classes-20-bins"),
    pytest.param(5, 50, 7, 15, 1.6, id="50-samples"),
]


@pytest.mark.parametrize(("seed", "n", "c", "bins", "temperature"), TORCH_CASES)
def test_ece_mce_classwise_equal_torchmetrics(seed, n, c, bins, temperature):
    labels, probs = classification_like(seed, n, c, temperature=temperature, dtype=np.float32)
    m = calibration_metrics(calibration_state(labels, probs, n_bins=bins, classwise=True))
    assert m.ece == pytest.approx(torchmetrics_ece(labels, probs, bins, "l1"), abs=1e-6)
    assert m.mce == pytest.approx(torchmetrics_ece(labels, probs, bins, "max"), abs=1e-6)
    assert m.classwise_ece == pytest.approx(torchmetrics_classwise_ece(labels, probs, bins), abs=1e-6)


def test_float64_input_is_binned_in_float32_like_torchmetrics():
    # torchmetrics casts confidences to float32 before binning, and so does cvmon (its sums stay
    # float64): a float64 confidence just below an edge rounds onto it and joins the bin above
    edges = torch_edges(15)
    conf = np.repeat(edges[6:15] - 1e-12, 40)
    assert (
        np.searchsorted(edges, conf, side="right") < np.searchsorted(edges, conf.astype(np.float32), side="right")
    ).all()
    rest = (1 - conf) / 2
    probs = np.stack([conf, rest, rest], axis=1)
    labels = (np.repeat(np.arange(6, 15), 40) % 2).astype(np.int64)  # right at even edges, wrong at odd
    m = calibration_metrics(calibration_state(labels, probs))
    assert m.ece == pytest.approx(torchmetrics_ece(labels, probs, 15, "l1"), abs=1e-6)
    assert m.mce == pytest.approx(torchmetrics_ece(labels, probs, 15, "max"), abs=1e-6)


def test_confidence_one_has_its_own_bin_like_torchmetrics():
    labels, probs = classification_like(6, 3000, 4, temperature=1.0, dtype=np.float32)
    assert probs.max() < 1
    probs[:400] = np.eye(4, dtype=np.float32)[labels[:400]]  # one-hot rows: confidence exactly 1
    probs[400:500] = np.eye(4, dtype=np.float32)[(labels[400:500] + 1) % 4]  # confidently wrong
    m = calibration_metrics(calibration_state(labels, probs))
    assert m.reliability[-1].count == 500 and m.reliability[-1].lower == m.reliability[-1].upper == 1.0
    assert m.reliability[-1].accuracy == 0.8 and m.reliability[-2].count > 0
    assert m.ece == pytest.approx(torchmetrics_ece(labels, probs, 15, "l1"), abs=1e-6)
    assert m.mce == pytest.approx(torchmetrics_ece(labels, probs, 15, "max"), abs=1e-6)


def test_confidences_on_the_float32_bin_edges_bin_like_torchmetrics():
    # rows whose confidence is exactly an edge torch computes (some differ from float32(k/15))
    edges = torch_edges(15).astype(np.float32)
    conf = np.repeat(edges[6:15], 40)  # every edge above 1/3 can be a top-label confidence of 3 classes
    rest = (1 - conf) / 2
    probs = np.stack([conf, rest, rest], axis=1).astype(np.float32)
    # right at even edges, wrong at odd ones: a group binned with its neighbour changes the ECE
    labels = (np.repeat(np.arange(6, 15), 40) % 2).astype(np.int64)
    m = calibration_metrics(calibration_state(labels, probs))
    # a sample binned one bin off would move the ECE by about 1e-3
    assert m.ece == pytest.approx(torchmetrics_ece(labels, probs, 15, "l1"), abs=1e-6)
    assert m.mce == pytest.approx(torchmetrics_ece(labels, probs, 15, "max"), abs=1e-6)


@pytest.mark.parametrize("n_bins", [1, 2, 7, 10, 15, 20, 33, 100])
def test_float32_edges_are_torch_linspace(n_bins):
    import torch

    theirs = torch.linspace(0, 1, n_bins + 1, dtype=torch.float32).numpy().astype(np.float64)
    assert (torch_edges(n_bins) == theirs).all()


NETCAL_CASES = [
    pytest.param(11, 5000, 10, 15, id="10-classes"),
    pytest.param(12, 20000, 50, 15, id="50-classes"),
    pytest.param(13, 2000, 4, 10, id="4-classes-10-bins"),
    pytest.param(14, 777, 6, 25, id="odd-size-25-bins"),
]


@pytest.mark.parametrize(("seed", "n", "c", "bins"), NETCAL_CASES)
def test_ece_mce_adaptive_equal_netcal_float64(seed, n, c, bins):
    labels, probs = classification_like(seed, n, c, dtype=np.float64)
    # where the definitions differ: netcal bins float64 against float64 edges and clips near 1;
    # cvmon (and torchmetrics) bin float32(c) and give float32 1.0 a bin of its own. Off the
    # edges the bins agree; confidences that round to 1.0 change ECE by their 1e-8 gap only.
    conf = probs.max(axis=1)
    assert conf.max() < 1 - np.finfo(np.float64).eps
    below_one = conf.astype(np.float32) < 1
    assert (
        np.searchsorted(np.linspace(0, 1, bins + 1), conf[below_one], side="right")
        == np.searchsorted(torch_edges(bins), conf[below_one].astype(np.float32), side="right")
    ).all()
    m = calibration_metrics(calibration_state(labels, probs, n_bins=bins))
    assert m.ece == pytest.approx(netcal_ece(labels, probs, bins), abs=1e-9)
    assert m.mce == pytest.approx(netcal_mce(labels, probs, bins), abs=1e-9)
    assert m.adaptive_ece == pytest.approx(netcal_ece(labels, probs, bins, equal_intervals=False), abs=1e-9)


@pytest.mark.parametrize("dtype", [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")])
# float32 rows sum to 1 within 1e-7, not within scikit-learn's float64 tolerance
@pytest.mark.filterwarnings("ignore:The y_prob values do not sum to one:UserWarning")
def test_brier_equals_scikit_learn(dtype):
    from sklearn.metrics import brier_score_loss

    labels, probs = classification_like(15, 3000, 12, dtype=dtype)
    m = calibration_metrics(calibration_state(labels, probs))
    theirs = brier_score_loss(labels, probs.astype(np.float64), labels=np.arange(12), scale_by_half=False)
    assert m.brier == pytest.approx(theirs, abs=1e-9)


def test_reliability_bins_by_hand():
    # 4 samples, 2 bins: [0, .5) holds nothing above 1/3 .. the 3-class confidences 0.4 (right) and
    # 0.45 (wrong); [.5, 1) holds 0.9 (right) and 0.8 (right)
    probs = np.array([[0.4, 0.3, 0.3], [0.45, 0.3, 0.25], [0.9, 0.05, 0.05], [0.1, 0.8, 0.1]])
    labels = np.array([0, 1, 0, 1])
    m = calibration_metrics(calibration_state(labels, probs, n_bins=2))
    low, high, one = m.reliability
    assert (low.count, low.accuracy, high.count, high.accuracy, one.count) == (2, 0.5, 2, 1.0, 0)
    assert low.confidence == pytest.approx(0.425) and high.confidence == pytest.approx(0.85)
    assert m.ece == pytest.approx(0.5 * 0.075 + 0.5 * 0.15)
    assert m.mce == pytest.approx(0.15)


def test_empty_window_has_no_numbers():
    m = calibration_metrics(calibration_state(np.zeros(0, np.int64), np.zeros((0, 5), np.float32)))
    assert (m.n, m.ece, m.mce, m.adaptive_ece, m.brier) == (0, None, None, None, None)
    assert all(b.count == 0 for b in m.reliability)


@pytest.mark.parametrize("dtype", [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")])
@pytest.mark.parametrize("parts", [pytest.param(p, id=f"{p}-parts") for p in (2, 9, 60)])
def test_merged_parts_equal_the_whole_exactly(dtype, parts):
    labels, probs = classification_like(16, 6000, 20, dtype=dtype)
    whole = calibration_state(labels, probs, classwise=True)
    rng = np.random.default_rng(parts)
    where = rng.integers(0, parts, size=labels.size)
    states = [calibration_state(labels[where == p], probs[where == p], classwise=True) for p in range(parts)]
    rng.shuffle(states)
    merged = CalibrationState.merge(*states)
    assert merged.to_bytes() == whole.to_bytes()
    halves = CalibrationState.merge(CalibrationState.merge(*states[::2]), CalibrationState.merge(*states[1::2]))
    assert halves.to_bytes() == whole.to_bytes()
    assert calibration_metrics(merged) == calibration_metrics(whole)  # float for float, no tolerance


def test_bytes_round_trip_and_versions():
    labels, probs = classification_like(17, 2000, 9)
    state = calibration_state(labels, probs, classwise=True)
    back = CalibrationState.from_bytes(state.to_bytes())
    assert back.to_bytes() == state.to_bytes()
    assert calibration_metrics(back) == calibration_metrics(state)
    lean = calibration_state(labels, probs, brier=False, samples=False)
    lean_metrics = calibration_metrics(CalibrationState.from_bytes(lean.to_bytes()))
    assert lean_metrics.adaptive_ece is None and lean_metrics.brier is None and lean_metrics.classwise_ece is None
    assert lean_metrics.ece == calibration_metrics(state).ece
    with pytest.raises(ValueError, match="calibration"):
        CalibrationState.from_bytes(classification_state(labels, probs).to_bytes())


def test_states_with_different_bins_do_not_merge():
    labels, probs = classification_like(18, 100, 3)
    with pytest.raises(ValueError, match="bin edges"):
        CalibrationState.merge(calibration_state(labels, probs, n_bins=10), calibration_state(labels, probs))


def test_states_of_float32_probabilities_and_float64_confidences_merge():
    # the service logs float32 probabilities for some predictions and a float64 confidence for others
    labels, probs = classification_like(23, 2000, 6, dtype=np.float32)
    a = calibration_state(labels[:1000], probs[:1000], brier=False)
    conf = probs[1000:].max(axis=1).astype(np.float64)
    b = calibration_state_from_confidences(conf, probs[1000:].argmax(axis=1) == labels[1000:])
    whole = calibration_state(labels, probs, brier=False)
    merged = CalibrationState.merge(a, b)
    assert (merged.count == whole.count).all() and (merged.confidence_sum == whole.confidence_sum).all()
    ours, theirs = calibration_metrics(merged), calibration_metrics(whole)
    assert (ours.ece, ours.mce, ours.reliability) == (theirs.ece, theirs.mce, theirs.reliability)
    # the kept samples are float64 now; the quantile edges are computed in that precision
    assert ours.adaptive_ece == pytest.approx(theirs.adaptive_ece, abs=1e-12)


def test_one_pass_gives_the_same_states_as_two():
    labels, probs = classification_like(19, 3000, 15, dtype=np.float32)
    cls_state, cal_state = probability_states(labels, probs, classwise=True)
    assert cls_state.to_bytes() == classification_state(labels, probs).to_bytes()
    assert cal_state.to_bytes() == calibration_state(labels, probs, classwise=True).to_bytes()


@pytest.mark.parametrize("dtype", [pytest.param(np.float32, id="float32"), pytest.param(np.float64, id="float64")])
def test_state_from_confidences_equals_state_from_probabilities(dtype):
    labels, probs = classification_like(20, 4000, 8, dtype=dtype)
    probs[:50] = np.eye(8, dtype=dtype)[labels[:50]]
    from_probs = calibration_state(labels, probs, brier=False)
    from_conf = calibration_state_from_confidences(probs.max(axis=1), probs.argmax(axis=1) == labels)
    assert from_conf.to_bytes() == from_probs.to_bytes()


def test_exact_sums_do_not_depend_on_order():
    # float64 sums in a different order would differ in the last bits; the fixed-point sums do not
    labels, probs = classification_like(21, 5000, 10, dtype=np.float64)
    order = np.random.default_rng(0).permutation(labels.size)
    a = calibration_metrics(calibration_state(labels, probs))
    b = calibration_metrics(calibration_state(labels[order], probs[order]))
    assert a == b


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sorted_quantiles_are_numpys_quantiles(dtype):
    """Adaptive ECE's bin edges: numpy's linear quantiles of the sorted samples, float for float."""
    from monitor.metrics._calibration import sorted_quantiles

    rng = np.random.default_rng(5)
    for n in (1, 2, 3, 15, 16, 17, 1000, 65_537):
        for ties in (False, True):
            x = rng.random(n).astype(dtype)
            if ties:
                x = np.round(x, 1).astype(dtype)
                x[: n // 3] = 1.0
            x.sort()
            for bins in (1, 10, 15, 31):
                q = np.linspace(0.0, 1.0, bins + 1)
                assert np.array_equal(sorted_quantiles(x, q), np.quantile(x, q)), (n, ties, bins)
