"""COCO detection metrics against pycocotools' COCOeval on seeded synthetic data.

Each scenario switches on one of the protocol's corners (crowd regions, empty images, classes
without ground truth, more than maxDets detections, scores tied across images, zero-area boxes);
every number must equal pycocotools to 1e-9 (in practice they agree bit for bit).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from monitor.metrics import coco_input, detection_metrics
from monitor.metrics._detection import _accumulate
from testkit.synth import CocoOptions, coco_like

from ._oracles import coco_matches, coco_per_class, coco_summary, netcal_dece, pycocotools_eval

BASE = CocoOptions(n_images=40, n_classes=12)
SCENARIOS = {
    "coco-mix": BASE,
    "crowd": dataclasses.replace(BASE, crowd_rate=0.25),
    "empty-images": dataclasses.replace(BASE, empty_gt_rate=0.35, empty_dt_rate=0.35),
    "unmatched-classes": dataclasses.replace(BASE, dt_only_classes=3, unused_classes=3),
    "maxdets-cap": dataclasses.replace(BASE, burst_rate=0.5, burst_size=140),
    "tied-scores": dataclasses.replace(BASE, score_decimals=1),
    "zero-area": dataclasses.replace(BASE, zero_area_rate=0.15),
    "single-class": dataclasses.replace(BASE, n_classes=1, mean_gt=3.0),
    "sparse": dataclasses.replace(BASE, mean_gt=0.6, max_dets=5),
    "dense": dataclasses.replace(BASE, n_images=15, mean_gt=25.0, n_classes=3),
    "everything": dataclasses.replace(
        BASE, crowd_rate=0.1, empty_gt_rate=0.2, empty_dt_rate=0.2, dt_only_classes=2, unused_classes=2,
        burst_rate=0.3, burst_size=120, score_decimals=2, zero_area_rate=0.05,
    ),
}  # fmt: skip
#: three seeds per scenario; `make test-fast` runs the first
CASES = [
    pytest.param(SCENARIOS[name], seed, id=f"{name}-seed{seed}", marks=[pytest.mark.slow] if seed > 1 else [])
    for name in SCENARIOS
    for seed in (1, 2, 3)
]


def _assert_close(ours: float | None, theirs: float | None, what: str) -> None:
    assert (ours is None) == (theirs is None), f"{what}: ours {ours}, pycocotools {theirs}"
    if ours is not None:
        assert abs(ours - theirs) <= 1e-9, f"{what}: ours {ours}, pycocotools {theirs}"  # type: ignore[operator]


@pytest.mark.parametrize(("options", "seed"), CASES)
def test_summary_and_per_class_ap_equal_pycocotools(options, seed):
    gt, dt = coco_like(seed, options)
    oracle = pycocotools_eval(gt, dt)
    metrics = detection_metrics(coco_input(gt, dt).detection_state())

    for name, theirs in coco_summary(oracle).items():
        _assert_close(getattr(metrics, name), theirs, name)
    for cat, (ap, ap50) in coco_per_class(oracle).items():
        mine = metrics.per_class.get(cat)
        _assert_close(None if mine is None else mine.ap, ap, f"class {cat} AP")
        _assert_close(None if mine is None else mine.ap50, ap50, f"class {cat} AP50")


@pytest.mark.parametrize(("options", "seed"), CASES)
def test_precision_and_recall_arrays_equal_pycocotools_bit_for_bit(options, seed):
    """Every entry of ``accumulate``'s arrays, not only their means: recall at every maxDets, and
    precision at maxDets 100 (the only one summarised) summed over the recall points in order,
    which is read at true positives only and must give pycocotools' numbers exactly."""
    gt, dt = coco_like(seed, options)
    oracle = pycocotools_eval(gt, dt)
    state = coco_input(gt, dt).detection_state()
    precision_sum, recall = _accumulate(state)
    cat_ids = list(oracle.params.catIds)
    theirs = oracle.eval["precision"][..., -1]  # (T, R, K, A) at maxDets 100
    # a sum left to right, as the kernel adds (cumsum adds in order; sum() would pair up)
    theirs_sum = np.where(theirs[:, 0] > -1, np.cumsum(theirs, axis=1)[:, -1], -1.0).transpose(2, 0, 1)  # (A, T, K)
    theirs_r = oracle.eval["recall"].transpose(2, 3, 0, 1)  # (T, K, A, M) -> (A, M, T, K)
    for i, cat in enumerate(state.classes.tolist()):
        k = cat_ids.index(cat)
        assert np.array_equal(precision_sum[..., i], theirs_sum[..., k]), f"class {cat} precision"
        assert np.array_equal(recall[..., i], theirs_r[..., k]), f"class {cat} recall"


@pytest.mark.parametrize(
    ("options", "seed"),
    [c for c in CASES if "maxdets" not in c.id and "everything" not in c.id],  # pycocotools only matches the top 100
)
@pytest.mark.parametrize("threshold", [0.0, 0.5, 0.8])
def test_operating_point_and_dece_follow_pycocotools_matches(options, seed, threshold):
    gt, dt = coco_like(seed, options)
    cats, scores, matched, ignored, n_gt = coco_matches(pycocotools_eval(gt, dt))
    metrics = detection_metrics(coco_input(gt, dt).detection_state(), score_threshold=threshold, dece_bins=10)

    above = scores >= threshold
    for cat, mine in metrics.per_class.items():
        sel = (cats == cat) & above
        tp = int(np.count_nonzero(sel & matched & ~ignored))
        fp = int(np.count_nonzero(sel & ~matched & ~ignored))
        assert (mine.true_positives, mine.false_positives, mine.ground_truth) == (tp, fp, n_gt.get(cat, 0))
        assert mine.precision == (tp / (tp + fp) if tp + fp else None)
        assert mine.recall == (tp / n_gt[cat] if n_gt.get(cat) else None)
    counted = above & ~ignored
    if counted.any():
        assert metrics.dece == pytest.approx(netcal_dece(scores[counted], matched[counted], 10), abs=1e-9)
    else:
        assert metrics.dece is None


def test_an_empty_result_file_scores_zero_where_there_is_ground_truth():
    gt, _ = coco_like(5, BASE)
    oracle = pycocotools_eval(gt, [])
    metrics = detection_metrics(coco_input(gt, []).detection_state())
    for name, theirs in coco_summary(oracle).items():
        _assert_close(getattr(metrics, name), theirs, name)
    assert metrics.ap == 0.0 and metrics.n_detections == 0


@pytest.mark.parametrize(
    "drop",
    [pytest.param("annotations", id="no-annotations"), pytest.param("all-crowd", id="all-crowd")],
)
def test_no_countable_ground_truth_gives_none_like_pycocotools_minus_one(drop):
    gt, dt = coco_like(6, BASE)
    if drop == "annotations":
        gt["annotations"] = []
    else:
        for ann in gt["annotations"]:
            ann["iscrowd"] = 1
    oracle = pycocotools_eval(gt, dt)
    metrics = detection_metrics(coco_input(gt, dt).detection_state())
    assert all(v is None for v in coco_summary(oracle).values())
    assert all(v is None for v in metrics.summary().values())
