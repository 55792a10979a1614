"""Seeded synthetic data for the metrics tests and ``bench/metrics.py``.

``coco_like`` writes ground truth and detections in the COCO json formats (boxes ``[x, y, w, h]``),
shaped like COCO val2017 on a 640×480 image: a skewed class mix, about 41 % small, 34 % medium and
24 % large objects (by annotation ``area``, which like a mask area is smaller than the box), a few
crowd regions, and detections that are jittered copies of the objects (sometimes of the wrong
class, sometimes duplicated) plus false positives, capped per image. Options switch on the edge
cases the oracle tests need: images without ground truth or without detections, classes without
ground truth, scores rounded so they tie across images, more detections per image and class than
``maxDets``, zero-area boxes.

``classification_like`` draws softmax outputs of a mis-calibrated classifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

IMAGE_W, IMAGE_H = 640.0, 480.0
#: Fractions of small / medium / large objects in COCO val2017.
SIZE_MIX = (0.41, 0.35, 0.24)
_SIZE_AREAS = ((8.0**2, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 400.0**2))


@dataclass(frozen=True)
class CocoOptions:
    """Knobs of :func:`coco_like`; the defaults give the benchmark's COCO-like mix."""

    n_images: int = 100
    n_classes: int = 80
    mean_gt: float = 7.0
    max_dets: int = 100
    crowd_rate: float = 0.01
    empty_gt_rate: float = 0.02
    empty_dt_rate: float = 0.02
    #: classes that appear in detections but never in ground truth
    dt_only_classes: int = 0
    #: categories listed in the ground truth that no annotation uses
    unused_classes: int = 0
    #: round scores to this many decimals (ties across images); None keeps float precision
    score_decimals: int | None = None
    #: probability that an image gets a burst of extra detections of one class (maxDets caps)
    burst_rate: float = 0.0
    burst_size: int = 150
    zero_area_rate: float = 0.0


def coco_like(seed: int, options: CocoOptions | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Return ``(ground_truth, detections)``: a COCO ground-truth dict and a COCO results list."""
    o = options or CocoOptions()
    rng = np.random.default_rng(seed)
    # sparse, unordered ids as in real files
    image_ids = rng.choice(np.arange(1, 20 * o.n_images + 10), size=o.n_images, replace=False)
    all_cat_ids = rng.choice(
        np.arange(1, 2 * (o.n_classes + o.dt_only_classes + o.unused_classes) + 5),
        size=o.n_classes + o.dt_only_classes + o.unused_classes,
        replace=False,
    )
    cat_ids = all_cat_ids[: o.n_classes]
    dt_only = all_cat_ids[o.n_classes : o.n_classes + o.dt_only_classes]
    unused = all_cat_ids[o.n_classes + o.dt_only_classes :]
    class_p = 1.0 / np.arange(1, o.n_classes + 1) ** 0.8
    class_p /= class_p.sum()

    images = [{"id": int(i), "width": int(IMAGE_W), "height": int(IMAGE_H)} for i in image_ids]
    categories = [{"id": int(c), "name": f"class-{c}"} for c in np.concatenate([cat_ids, unused])]
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for image_id in image_ids:
        n_gt = 0 if rng.random() < o.empty_gt_rate else int(rng.poisson(o.mean_gt))
        gt_boxes = _boxes(rng, n_gt, o.zero_area_rate)
        gt_classes = rng.choice(cat_ids, size=n_gt, p=class_p)
        crowd = rng.random(n_gt) < o.crowd_rate
        for box, cls, is_crowd in zip(gt_boxes, gt_classes, crowd, strict=True):
            # the annotation area is a mask area: smaller than the box, sometimes by a lot
            area = float(np.round(box[2] * box[3] * rng.uniform(0.55, 1.0), 2))
            annotations.append({
                "id": len(annotations) + 1, "image_id": int(image_id), "category_id": int(cls),
                "bbox": [float(v) for v in box], "area": area, "iscrowd": int(is_crowd),
            })  # fmt: skip
        if rng.random() < o.empty_dt_rate:
            continue
        dets = _detections(rng, gt_boxes, gt_classes, cat_ids, dt_only, o)
        for box, cls, score in dets:
            detections.append({"image_id": int(image_id), "category_id": int(cls),
                               "bbox": [float(v) for v in box], "score": score})  # fmt: skip
    # images in file order differ from id order; pycocotools sorts by id
    ground_truth = {"images": images, "annotations": annotations, "categories": categories}
    return ground_truth, detections


def _boxes(rng: np.random.Generator, n: int, zero_area_rate: float) -> NDArray[np.float64]:
    size = rng.choice(3, size=n, p=SIZE_MIX)
    lo = np.array([_SIZE_AREAS[s][0] for s in size])
    hi = np.array([_SIZE_AREAS[s][1] for s in size])
    area = np.exp(rng.uniform(np.log(lo), np.log(hi))) if n else np.zeros(0)
    aspect = np.exp(rng.uniform(np.log(0.4), np.log(2.5), size=n))
    w = np.minimum(np.sqrt(area * aspect), IMAGE_W - 1)
    h = np.minimum(area / np.maximum(w, 1e-9), IMAGE_H - 1)
    x = rng.uniform(0, IMAGE_W - w)
    y = rng.uniform(0, IMAGE_H - h)
    boxes = np.round(np.stack([x, y, w, h], axis=1), 2)
    flat = rng.random(n) < zero_area_rate
    boxes[flat, 2 + rng.integers(0, 2, size=int(flat.sum()))] = 0.0
    return boxes.reshape(n, 4)


def _detections(
    rng: np.random.Generator,
    gt_boxes: NDArray[np.float64],
    gt_classes: NDArray[np.int64],
    cat_ids: NDArray[np.int64],
    dt_only: NDArray[np.int64],
    o: CocoOptions,
) -> list[tuple[NDArray[np.float64], int, float]]:
    out: list[tuple[NDArray[np.float64], int, float]] = []
    for box, cls in zip(gt_boxes, gt_classes, strict=True):
        # most objects are found, some twice; localisation error shrinks with the score
        for _ in range(int(rng.random() < 0.8) + int(rng.random() < 0.15)):
            quality = rng.beta(4, 1.5)
            jitter = (1.0 - quality) * 0.35 * np.array([box[2], box[3], box[2], box[3]])
            d = box + rng.normal(0.0, 1.0, size=4) * jitter
            d[2:] = np.maximum(d[2:], 0.5)
            label = cls if rng.random() < 0.9 else rng.choice(cat_ids)
            out.append((np.round(d, 2), int(label), float(np.clip(quality + rng.normal(0, 0.1), 0.001, 1.0))))
    extra_classes = np.concatenate([cat_ids, dt_only]) if len(dt_only) else cat_ids
    n_fp = int(rng.integers(0, max(o.max_dets - len(out), 0) + 1))
    fp_boxes = _boxes(rng, n_fp, o.zero_area_rate)
    fp_classes = rng.choice(extra_classes, size=n_fp)
    fp_scores = rng.beta(1.2, 4.0, size=n_fp)
    out.extend((b, int(c), float(s)) for b, c, s in zip(fp_boxes, fp_classes, fp_scores, strict=True))
    order = rng.permutation(len(out))
    out = [out[i] for i in order][: o.max_dets]
    if o.burst_rate and rng.random() < o.burst_rate and len(gt_boxes):
        # a detector that fires many times on one object: more than maxDets of one class
        k = int(rng.integers(len(gt_boxes)))
        for _ in range(o.burst_size):
            d = gt_boxes[k] + rng.normal(0.0, 3.0, size=4)
            d[2:] = np.maximum(d[2:], 0.5)
            out.append((np.round(d, 2), int(gt_classes[k]), float(rng.random())))
    if o.score_decimals is not None:
        out = [(b, c, round(s, o.score_decimals)) for b, c, s in out]
    return out


def classification_like(
    seed: int, n: int, n_classes: int, *, temperature: float = 1.6, dtype: type = np.float32
) -> tuple[NDArray[np.int64], NDArray[Any]]:
    """``(labels, probabilities)``: an over-confident classifier's softmax on ``n`` samples."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n)
    logits = rng.standard_normal((n, n_classes)).astype(np.float64)
    logits[np.arange(n), labels] += rng.gamma(2.0, 1.2, size=n)
    logits *= temperature
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    return labels, p.astype(dtype)
