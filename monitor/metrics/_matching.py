"""Per-image greedy matching of detections to ground truth: the COCO ``evaluateImg`` stage.

Why a hand-written kernel rather than a library: pycocotools is the reference (the tests compare
with it) but spends ~20 s in Python loops on 5 000 images and keeps its per-image results in a
form that cannot be stored or merged; faster-coco-eval is a C++ reimplementation with the same
limits and a heavy dependency. Matching is a few nested loops over small arrays, which numba
compiles to the same speed as C++ while the result stays the mergeable state of
:mod:`monitor.metrics._detection`.

The kernel mirrors ``COCOeval.evaluateImg`` for boxes (read from the algorithm, not copied):

* IoU as ``maskUtils.iou`` computes it, in float64 from ``[x, y, w, h]``: the intersection
  width is ``min(x1 + w1, x2 + w2) - max(x1, x2)``; against a crowd region the union is the
  detection's own area (intersection over detection).
* Per image, class, area range and IoU threshold ``t``: detections in order of descending score
  (stable: input order on ties); ground truth that counts first, then ignored ground truth
  (crowd, or ``area`` outside the range), each in input order. Each detection takes the
  ground truth with the highest IoU ≥ ``min(t, 1 - 1e-10)`` (the later one on equal IoU) that is
  not taken (crowd regions can be taken many times), and stops looking at ignored ground truth
  once it has a regular match. Matched to ignored ground truth, or unmatched with an area
  outside the range: ignored. Otherwise unmatched: a false positive.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._detection import AREA_RANGES, IOU_THRESHOLDS, N_AREA, DetectionState, build_state
from ._jit import kernel

_AREA_LO = np.array([r[0] for r in AREA_RANGES])
_AREA_HI = np.array([r[1] for r in AREA_RANGES])
#: pycocotools matches at ``min(t, 1 - 1e-10)`` so that an IoU of exactly 1 still matches at any t.
_MATCH_THRESHOLDS = np.minimum(IOU_THRESHOLDS, 1 - 1e-10)


@kernel
def _match_groups(
    group_dt: Any,
    group_gt: Any,
    dt_box: Any,
    dt_area: Any,
    gt_box: Any,
    gt_area: Any,
    gt_crowd: Any,
    area_lo: Any,
    area_hi: Any,
    thresholds: Any,
    tp: Any,
    ignored: Any,
) -> None:
    """Match each (image, class) group; set the flag bits ``a * T + t`` of ``tp`` and ``ignored``.

    ``group_dt[g]`` / ``group_gt[g]`` are ``[start, stop)`` ranges of the group's detections
    (sorted by descending score, ties in input order) and ground truth (input order).
    """
    n_thr = thresholds.shape[0]
    n_area = area_lo.shape[0]
    all_thresholds = (np.int64(1) << n_thr) - 1
    for g in range(group_dt.shape[0]):
        d0 = group_dt[g, 0]
        nd = group_dt[g, 1] - d0
        g0 = group_gt[g, 0]
        ng = group_gt[g, 1] - g0
        if ng == 0:
            # nothing to match: false positives, or ignored where outside the area range
            for i in range(nd):
                for a in range(n_area):
                    if dt_area[d0 + i] < area_lo[a] or dt_area[d0 + i] > area_hi[a]:
                        ignored[d0 + i] |= all_thresholds << (a * n_thr)
            continue
        iou = np.zeros((nd, ng))
        for i in range(nd):
            dx = dt_box[d0 + i, 0]
            dy = dt_box[d0 + i, 1]
            dw = dt_box[d0 + i, 2]
            dh = dt_box[d0 + i, 3]
            da = dw * dh
            for k in range(ng):
                gx = gt_box[g0 + k, 0]
                gy = gt_box[g0 + k, 1]
                gw = gt_box[g0 + k, 2]
                gh = gt_box[g0 + k, 3]
                iw = min(dw + dx, gw + gx) - max(dx, gx)
                if iw <= 0:
                    continue
                ih = min(dh + dy, gh + gy) - max(dy, gy)
                if ih <= 0:
                    continue
                inter = iw * ih
                union = da if gt_crowd[g0 + k] else da + gw * gh - inter
                iou[i, k] = inter / union
        order = np.empty(ng, dtype=np.int64)
        ignore = np.empty(ng, dtype=np.bool_)
        taken = np.empty(ng, dtype=np.bool_)
        for a in range(n_area):
            lo = area_lo[a]
            hi = area_hi[a]
            n_regular = 0
            for k in range(ng):
                ignore[k] = gt_crowd[g0 + k] or gt_area[g0 + k] < lo or gt_area[g0 + k] > hi
                if not ignore[k]:
                    order[n_regular] = k
                    n_regular += 1
            pos = n_regular
            for k in range(ng):
                if ignore[k]:
                    order[pos] = k
                    pos += 1
            for t in range(n_thr):
                bit = np.int64(1) << (a * n_thr + t)
                taken[:] = False
                for i in range(nd):
                    best = thresholds[t]
                    m = -1
                    for kk in range(ng):
                        k = order[kk]
                        if taken[k] and not gt_crowd[g0 + k]:
                            continue
                        if m > -1 and not ignore[m] and ignore[k]:
                            break
                        if iou[i, k] < best:
                            continue
                        best = iou[i, k]
                        m = k
                    if m == -1:
                        if dt_area[d0 + i] < lo or dt_area[d0 + i] > hi:
                            ignored[d0 + i] |= bit
                    else:
                        taken[m] = True
                        if ignore[m]:
                            ignored[d0 + i] |= bit
                        else:
                            tp[d0 + i] |= bit


def detection_state(
    *,
    gt_images: ArrayLike,
    gt_boxes: ArrayLike,
    gt_classes: ArrayLike,
    dt_images: ArrayLike,
    dt_boxes: ArrayLike,
    dt_classes: ArrayLike,
    dt_scores: ArrayLike,
    gt_crowd: ArrayLike | None = None,
    gt_areas: ArrayLike | None = None,
    box_format: Literal["xyxy", "xywh"] = "xyxy",
    n_images: int | None = None,
) -> DetectionState:
    """Match detections to ground truth, image by image, and return the mergeable state.

    Columnar input: one row per box, all images together.

    Parameters
    ----------
    gt_images, dt_images
        int64 image key of each box. Keys order tied scores across images (pycocotools: the
        image id); for service data any stable int64 per image works (e.g. a hash of its id).
    gt_boxes, dt_boxes
        ``(n, 4)`` boxes in pixels: ``x1, y1, x2, y2`` (``box_format="xyxy"``) or COCO's
        ``x, y, w, h`` (``"xywh"``; pass COCO boxes this way to reproduce pycocotools bit for bit).
    gt_classes, dt_classes
        int64 class id of each box.
    dt_scores
        Detection confidence; higher ranks first.
    gt_crowd
        1 / True for crowd regions (matched by intersection over detection area, never counted).
    gt_areas
        Area used for the small / medium / large ranges; COCO uses the annotation ``area`` (the
        mask area), which differs from ``w * h``, the default.
    n_images
        Number of images evaluated, including images with no boxes at all (default: images with
        at least one box).
    """
    g_img = _column(gt_images, "gt_images", np.int64)
    g_cls = _column(gt_classes, "gt_classes", np.int64, g_img.size)
    g_box = _boxes(gt_boxes, "gt_boxes", g_img.size, box_format)
    g_crowd = (
        np.zeros(g_img.size, dtype=bool)
        if gt_crowd is None
        else _column(gt_crowd, "gt_crowd", np.int64, g_img.size) != 0
    )
    g_area = g_box[:, 2] * g_box[:, 3] if gt_areas is None else _column(gt_areas, "gt_areas", np.float64, g_img.size)
    d_img = _column(dt_images, "dt_images", np.int64)
    d_cls = _column(dt_classes, "dt_classes", np.int64, d_img.size)
    d_box = _boxes(dt_boxes, "dt_boxes", d_img.size, box_format)
    d_score = _column(dt_scores, "dt_scores", np.float64, d_img.size)
    if np.isnan(d_score).any() or np.isnan(g_area).any():
        raise ValueError("dt_scores and gt_areas must not contain NaN")

    classes = np.union1d(g_cls, d_cls)
    images = np.union1d(g_img, d_img)
    k = max(classes.size, 1)
    g_key = np.searchsorted(images, g_img) * k + np.searchsorted(classes, g_cls)
    d_key = np.searchsorted(images, d_img) * k + np.searchsorted(classes, d_cls)
    # detections by group, then descending score; lexsort is stable, so ties keep input order
    d_order = np.lexsort((-d_score, d_key))
    g_order = np.argsort(g_key, kind="stable")
    d_key_sorted = d_key[d_order]
    g_key_sorted = g_key[g_order]
    group_keys, group_start, group_size = np.unique(d_key_sorted, return_index=True, return_counts=True)
    group_dt = np.stack([group_start, group_start + group_size], axis=1).astype(np.int64)
    group_gt = np.stack(
        [
            np.searchsorted(g_key_sorted, group_keys, "left"),
            np.searchsorted(g_key_sorted, group_keys, "right"),
        ],
        axis=1,
    ).astype(np.int64)
    tp = np.zeros(d_img.size, dtype=np.int64)
    ignored = np.zeros(d_img.size, dtype=np.int64)
    _match_groups(
        group_dt, group_gt,
        np.ascontiguousarray(d_box[d_order]), np.ascontiguousarray(d_box[d_order, 2] * d_box[d_order, 3]),
        np.ascontiguousarray(g_box[g_order]), np.ascontiguousarray(g_area[g_order]),
        np.ascontiguousarray(g_crowd[g_order]),
        _AREA_LO, _AREA_HI, _MATCH_THRESHOLDS, tp, ignored,
    )  # fmt: skip
    rank = (np.arange(d_img.size) - np.repeat(group_start, group_size)).astype(np.int32)

    counted = np.zeros((classes.size, N_AREA), dtype=np.int64)
    g_cls_idx = np.searchsorted(classes, g_cls)
    for a, (lo, hi) in enumerate(AREA_RANGES):
        keep = ~g_crowd & (g_area >= lo) & (g_area <= hi)
        counted[:, a] = np.bincount(g_cls_idx[keep], minlength=classes.size)
    return build_state(
        classes,
        counted,
        images.size if n_images is None else n_images,
        d_cls[d_order],
        d_score[d_order],
        d_img[d_order],
        rank,
        tp,
        ignored,
    )


def _column(values: ArrayLike, name: str, dtype: type, n: int | None = None) -> NDArray[Any]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.size != n:
        raise ValueError(f"{name} has {arr.size} values, expected {n}")
    if dtype is np.int64 and arr.size and not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"{name} must hold integers, got dtype {arr.dtype}")
    return arr.astype(dtype, copy=False)


def _boxes(values: ArrayLike, name: str, n: int, box_format: str) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 and n == 0:
        return np.zeros((0, 4))
    if arr.shape != (n, 4):
        raise ValueError(f"{name} must have shape ({n}, 4), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    if box_format == "xyxy":
        arr = np.stack([arr[:, 0], arr[:, 1], arr[:, 2] - arr[:, 0], arr[:, 3] - arr[:, 1]], axis=1)
    elif box_format != "xywh":
        raise ValueError(f"box_format must be 'xyxy' or 'xywh', not {box_format!r}")
    if (arr[:, 2:] < 0).any():
        raise ValueError(f"{name} has a box with negative width or height")
    return arr
