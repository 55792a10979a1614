"""The detection state: merging parts gives the whole, bytes round-trip, hand-checked matches."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from monitor.metrics import DetectionState, coco_input, detection_metrics, detection_state
from testkit.synth import CocoOptions, coco_like

OPTIONS = CocoOptions(
    n_images=60, n_classes=8, crowd_rate=0.1, empty_gt_rate=0.1, empty_dt_rate=0.1, dt_only_classes=1,
    burst_rate=0.2, burst_size=110, score_decimals=2,
)  # fmt: skip


@pytest.fixture(scope="module")
def data():
    gt, dt = coco_like(11, OPTIONS)
    return coco_input(gt, dt)


def _subset_state(data, images):
    g = np.isin(data.gt_images, images)
    d = np.isin(data.dt_images, images)
    return detection_state(
        gt_images=data.gt_images[g], gt_boxes=data.gt_boxes[g], gt_classes=data.gt_classes[g],
        gt_crowd=data.gt_crowd[g], gt_areas=data.gt_areas[g],
        dt_images=data.dt_images[d], dt_boxes=data.dt_boxes[d], dt_classes=data.dt_classes[d],
        dt_scores=data.dt_scores[d], box_format="xywh", n_images=len(images),
    )  # fmt: skip


def _same(a: DetectionState, b: DetectionState) -> None:
    assert a.to_bytes() == b.to_bytes()
    assert detection_metrics(a) == detection_metrics(b)


@pytest.mark.parametrize(
    ("parts", "seed"),
    [pytest.param(p, s, id=f"{p}-parts-seed{s}") for p in (2, 5, 24) for s in (0, 1)],
)
def test_merging_random_image_partitions_gives_the_whole(data, parts, seed):
    rng = np.random.default_rng(seed)
    whole = data.detection_state()
    assignment = rng.integers(0, parts, size=data.image_ids.size)
    states = [_subset_state(data, data.image_ids[assignment == p]) for p in range(parts)]
    rng.shuffle(states)
    _same(DetectionState.merge(*states), whole)


def test_merge_is_associative_and_commutative(data):
    thirds = np.array_split(np.random.default_rng(3).permutation(data.image_ids), 3)
    a, b, c = (_subset_state(data, ids) for ids in thirds)
    left = DetectionState.merge(DetectionState.merge(a, b), c)
    right = DetectionState.merge(a, DetectionState.merge(c, b))
    _same(left, right)
    _same(DetectionState.merge(c, DetectionState.empty(), b, a), left)


def test_merging_with_states_without_detections_keeps_their_ground_truth(data):
    """One part with detections and parts without any (an hour's late labels of images with no
    detection): the detections are taken as they are, the ground truth and images still add up."""
    ids = np.random.default_rng(5).permutation(data.image_ids)
    a = _subset_state(data, ids[:40])
    no_detections = dataclasses.replace(
        _subset_state(data, ids[40:]), **{c: np.zeros(0, dtype=getattr(a, c).dtype) for c in
                                         ("det_class", "score", "image", "rank", "tp", "ignored")}
    )  # fmt: skip
    merged = DetectionState.merge(no_detections, a, DetectionState.empty())
    assert merged.n_images == a.n_images + no_detections.n_images
    assert np.array_equal(merged.score, a.score) and np.array_equal(merged.tp, a.tp)
    assert merged.gt_counts.sum() == a.gt_counts.sum() + no_detections.gt_counts.sum()


def test_hours_of_chunks_merge_like_the_cli_does(data):
    chunks = [data.detection_state(start, stop) for start, stop in data.chunks(7)]
    _same(DetectionState.merge(*chunks), data.detection_state())


def test_bytes_round_trip(data):
    state = data.detection_state()
    blob = state.to_bytes()
    back = DetectionState.from_bytes(blob)
    _same(back, state)
    # compact: 34 bytes a detection plus a small header
    assert len(blob) <= 34 * state.n_detections + 2048
    assert DetectionState.from_bytes(DetectionState.empty().to_bytes()).n_detections == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(lambda b: b"XXXX" + b[4:], "magic", id="bad-magic"),
        pytest.param(lambda b: b[:-3], "truncated", id="truncated"),
        pytest.param(lambda b: b + b"\0", "trailing", id="trailing-bytes"),
        pytest.param(lambda b: b[:4] + b"\x09\x00" + b[6:], "format", id="future-version"),
    ],
)
def test_corrupt_bytes_are_refused(data, mutate, message):
    with pytest.raises(ValueError, match=message):
        DetectionState.from_bytes(mutate(data.detection_state().to_bytes()))


def test_a_state_of_another_kind_is_refused():
    from monitor.metrics import ClassificationState

    with pytest.raises(ValueError, match="expected a detection state"):
        DetectionState.from_bytes(ClassificationState.empty(3).to_bytes())


def test_xyxy_and_xywh_inputs_agree(data):
    def xyxy(b):
        return np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], axis=1)

    common = {
        "gt_images": data.gt_images, "gt_classes": data.gt_classes, "gt_crowd": data.gt_crowd, "gt_areas": data.gt_areas,
        "dt_images": data.dt_images, "dt_classes": data.dt_classes, "dt_scores": data.dt_scores,
    }  # fmt: skip
    a = detection_state(gt_boxes=data.gt_boxes, dt_boxes=data.dt_boxes, box_format="xywh", **common)
    b = detection_state(gt_boxes=xyxy(data.gt_boxes), dt_boxes=xyxy(data.dt_boxes), **common)
    # the widths differ in the last bit after a round trip through x2 = x + w, so compare numbers
    ma, mb = detection_metrics(a), detection_metrics(b)
    for name, value in ma.summary().items():
        assert getattr(mb, name) == pytest.approx(value, abs=1e-6), name


# --------------------------------------------------------------------------------------------
# hand-checked cases


def _one_image(dets, gts, crowd=None, classes=None):
    """dets: (x1, y1, x2, y2, score); gts: (x1, y1, x2, y2); one class unless given."""
    dets = np.array(dets, dtype=float).reshape(-1, 5)
    gts = np.array(gts, dtype=float).reshape(-1, 4)
    return detection_state(
        gt_images=np.zeros(len(gts), dtype=np.int64), gt_boxes=gts, gt_classes=np.ones(len(gts), dtype=np.int64),
        gt_crowd=crowd,
        dt_images=np.zeros(len(dets), dtype=np.int64), dt_boxes=dets[:, :4], dt_scores=dets[:, 4],
        dt_classes=np.ones(len(dets), dtype=np.int64) if classes is None else np.array(classes),
    )  # fmt: skip


GT_A = (0, 0, 100, 100)
GT_B = (200, 0, 300, 100)
# a 100x100 box shifted by s has IoU (100 - s) / (100 + s) with the original:
# with GT_A 0.818 (s = 10) and 0.6 (s = 25); with GT_B 0.7 (s = 300/17)
D_A80 = (10, 0, 110, 100)
D_A60 = (25, 0, 125, 100)
D_B70 = (200 + 300 / 17, 0, 300 + 300 / 17, 100)
D_NONE = (400, 400, 450, 450)


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        # scores: A80 0.9, A60 0.8 (a duplicate of A: false positive), B70 0.7, NONE 0.3
        pytest.param(0.5, (2, 1, 2 / 3, 1.0), id="threshold-0.5"),
        pytest.param(0.75, (1, 1, 0.5, 0.5), id="threshold-0.75"),
        pytest.param(0.0, (2, 2, 0.5, 1.0), id="threshold-0"),
        pytest.param(0.95, (0, 0, None, 0.0), id="threshold-above-all"),
    ],
)
def test_operating_point_by_hand(threshold, expected):
    state = _one_image([(*D_A80, 0.9), (*D_A60, 0.8), (*D_B70, 0.7), (*D_NONE, 0.3)], [GT_A, GT_B])
    c = detection_metrics(state, score_threshold=threshold).per_class[1]
    assert (c.true_positives, c.false_positives, c.precision, c.recall) == expected


def test_a_detection_on_a_crowd_region_counts_neither_way():
    # the crowd region covers the detection: IoU = intersection / detection area = 1
    state = _one_image([(*D_A80, 0.9), (410, 410, 440, 440, 0.8)], [GT_A, (400, 400, 500, 500)], crowd=[0, 1])
    c = detection_metrics(state).per_class[1]
    assert (c.true_positives, c.false_positives, c.ground_truth) == (1, 0, 1)
    # the crowd match is ignored at every threshold, so AP is that of the single hit alone
    assert c.ap == detection_metrics(_one_image([(*D_A80, 0.9)], [GT_A])).per_class[1].ap


def test_ap_by_hand_one_hit():
    # one object found at IoU 0.818: precision 1 up to recall 1 at the 7 thresholds 0.50 .. 0.80,
    # no match above, so AP = AR = 7/10; AP50 = AP75 = 1 (to pycocotools' 1 / (1 + eps))
    m = detection_metrics(_one_image([(*D_A80, 0.9)], [GT_A]))
    assert (m.ap, m.ap50, m.ap75) == (pytest.approx(0.7), pytest.approx(1.0), pytest.approx(1.0))
    assert (m.ar1, m.ar100) == (pytest.approx(0.7), pytest.approx(0.7))


def test_dece_by_hand():
    # two detections at 0.95 (one right), two at 0.15 (both wrong), 10 bins:
    # |0.5 - 0.95| * 1/2 + |0 - 0.15| * 1/2 = 0.3
    dets = [(*D_A80, 0.95), (*D_NONE, 0.95), (500, 0, 520, 20, 0.15), (600, 0, 620, 20, 0.15)]
    m = detection_metrics(_one_image(dets, [GT_A]), score_threshold=0.0, dece_bins=10)
    assert m.dece == pytest.approx(0.3, abs=1e-12)
    occupied = [b for b in m.dece_bins if b.count]
    assert [(b.count, b.accuracy) for b in occupied] == [(2, 0.0), (2, 0.5)]


def test_tied_scores_across_images_break_by_image_key_then_rank():
    # equal scores in two images: the order (image 1 first) decides the precision curve
    gts = np.array([GT_A, GT_A], dtype=float)
    dets = np.array([D_NONE, D_A80], dtype=float)

    def run(dt_images):
        s = detection_state(gt_images=[1, 2], gt_boxes=gts, gt_classes=[1, 1],
                            dt_images=dt_images, dt_boxes=dets, dt_scores=[0.5, 0.5], dt_classes=[1, 1])  # fmt: skip
        return detection_metrics(s).ap50

    # false positive first (image 1), then the hit: precision 1/2 at recall 1/2 -> AP50 = 0.5 * 51/101
    assert run([1, 2]) == pytest.approx(0.5 * 51 / 101)
    # hit first: precision 1 at recall 1/2
    assert run([2, 1]) == pytest.approx(51 / 101)


def test_classes_and_images_without_boxes():
    state = detection_state(
        gt_images=np.zeros(0, np.int64), gt_boxes=np.zeros((0, 4)), gt_classes=np.zeros(0, np.int64),
        dt_images=[1], dt_boxes=[[0, 0, 10, 10]], dt_scores=[0.9], dt_classes=[4], n_images=3,
    )  # fmt: skip
    m = detection_metrics(state)
    assert m.ap is None and m.per_class[4].ap is None and m.per_class[4].false_positives == 1
    assert m.n_images == 3 and m.precision == 0.0 and m.recall is None
    empty = detection_metrics(DetectionState.empty())
    assert empty.ap is None and empty.dece is None and dict(empty.per_class) == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param({"dt_boxes": [[0, 0, 10]]}, "shape", id="box-shape"),
        pytest.param({"dt_boxes": [[10, 0, 0, 10]]}, "negative width", id="negative-width"),
        pytest.param({"dt_scores": [float("nan")]}, "NaN", id="nan-score"),
        pytest.param({"dt_classes": [1.5]}, "integers", id="float-class"),
        pytest.param({"dt_images": [1, 2]}, "values", id="length-mismatch"),
        pytest.param({"box_format": "cxcywh"}, "box_format", id="bad-format"),
    ],
)
def test_bad_input_is_refused_with_a_reason(change, message):
    args = {"gt_images": [1], "gt_boxes": [[0, 0, 10, 10]], "gt_classes": [1],
                "dt_images": [1], "dt_boxes": [[0, 0, 10, 10]], "dt_scores": [0.5], "dt_classes": [1]}  # fmt: skip
    args.update(change)
    with pytest.raises(ValueError, match=message):
        detection_state(**args)


def test_state_arrays_are_read_only(data):
    state = data.detection_state()
    with pytest.raises(ValueError):
        state.score[0] = 1.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        state.n_images = 1  # type: ignore[misc]


def test_a_state_missing_an_array_is_refused():
    from monitor.metrics._codec import pack

    blob = pack("detection", {"n_images": 0}, {"classes": np.zeros(0, np.int64)})
    with pytest.raises(ValueError, match="lacks"):
        DetectionState.from_bytes(blob)


def test_without_the_per_class_table_the_rest_is_the_same(data):
    state = data.detection_state()
    full = detection_metrics(state, score_threshold=0.3)
    lean = detection_metrics(state, score_threshold=0.3, per_class=False)
    assert full.per_class and not lean.per_class
    assert dataclasses.replace(full, per_class={}) == lean
