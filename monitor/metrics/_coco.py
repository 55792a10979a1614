"""COCO json (already parsed) to the columnar input of :func:`detection_state`.

Takes the ground-truth dict (``images``, ``annotations``, ``categories``) and the results list
(``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``, ``score``) and selects what
pycocotools' ``COCOeval`` evaluates: all ground-truth images, annotations of listed images and
categories, detections of listed categories (results for an image the ground truth does not
list are an error, as in ``COCO.loadRes``). Reading the files is the caller's business: this
module stays pure.

Ground-truth ``area`` defaults to ``w * h`` and ``iscrowd`` to 0 when missing (pycocotools fails
on both). Boxes with a negative width or height and non-finite scores are refused (pycocotools
would compute IoUs with them). pycocotools treats a match to an annotation whose id is 0 as no match; annotation ids
are not used here, so such a file scores as if the id were non-zero.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from ._detection import DetectionState
from ._matching import detection_state


@dataclass(frozen=True, slots=True)
class CocoInput:
    """A COCO ground truth and result file as columns, sorted by image id."""

    #: all ground-truth image ids, sorted
    image_ids: NDArray[np.int64]
    #: category id -> name, in ground-truth order
    categories: Mapping[int, str]
    gt_images: NDArray[np.int64]
    gt_boxes: NDArray[np.float64]
    gt_classes: NDArray[np.int64]
    gt_crowd: NDArray[np.bool_]
    gt_areas: NDArray[np.float64]
    dt_images: NDArray[np.int64]
    dt_boxes: NDArray[np.float64]
    dt_classes: NDArray[np.int64]
    dt_scores: NDArray[np.float64]

    def detection_state(self, start: int = 0, stop: int | None = None) -> DetectionState:
        """The matching state of the images ``image_ids[start:stop]``."""
        ids = self.image_ids[start:stop]
        if ids.size == 0:
            return DetectionState.empty()
        g = slice(
            int(np.searchsorted(self.gt_images, ids[0], "left")),
            int(np.searchsorted(self.gt_images, ids[-1], "right")),
        )
        d = slice(
            int(np.searchsorted(self.dt_images, ids[0], "left")),
            int(np.searchsorted(self.dt_images, ids[-1], "right")),
        )
        return detection_state(
            gt_images=self.gt_images[g], gt_boxes=self.gt_boxes[g], gt_classes=self.gt_classes[g],
            gt_crowd=self.gt_crowd[g], gt_areas=self.gt_areas[g],
            dt_images=self.dt_images[d], dt_boxes=self.dt_boxes[d], dt_classes=self.dt_classes[d],
            dt_scores=self.dt_scores[d], box_format="xywh", n_images=int(ids.size),
        )  # fmt: skip

    def chunks(self, images_per_chunk: int) -> Iterator[tuple[int, int]]:
        """``(start, stop)`` image ranges covering all images, for progress reporting."""
        for start in range(0, self.image_ids.size, images_per_chunk):
            yield start, min(start + images_per_chunk, self.image_ids.size)


def coco_input(ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]]) -> CocoInput:
    """Columns of a parsed COCO ground-truth dict and results list.

    Raises ``TypeError`` when the json has the wrong shape and ``ValueError`` when its content
    is malformed, with a message that names what is wrong.
    """
    if not isinstance(ground_truth, Mapping):
        raise TypeError("ground truth must be a JSON object with images, annotations and categories")
    if not isinstance(detections, Sequence) or isinstance(detections, (str, bytes)):
        raise TypeError("detections must be a JSON list of results")
    for key in ("images", "annotations", "categories"):
        if not isinstance(ground_truth.get(key), list):
            raise TypeError(f"ground truth has no {key!r} list")
    try:
        image_ids = np.unique(np.array([img["id"] for img in ground_truth["images"]], dtype=np.int64))
        categories = {int(c["id"]): str(c.get("name", c["id"])) for c in ground_truth["categories"]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"ground truth images and categories need integer 'id's ({exc})") from None
    cat_ids = np.array(sorted(categories), dtype=np.int64)

    anns = ground_truth["annotations"]
    try:
        gt_images = _ints(anns, "image_id")
        gt_classes = _ints(anns, "category_id")
        gt_boxes = _bboxes(anns)
        gt_crowd = np.fromiter((bool(a.get("iscrowd", 0)) for a in anns), dtype=bool, count=len(anns))
        gt_areas = np.fromiter(
            (a["area"] if "area" in a else a["bbox"][2] * a["bbox"][3] for a in anns),
            dtype=np.float64,
            count=len(anns),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a ground-truth annotation is malformed: {exc!r}") from None
    keep = np.isin(gt_images, image_ids) & np.isin(gt_classes, cat_ids)

    try:
        dt_images = _ints(detections, "image_id")
        dt_classes = _ints(detections, "category_id")
        dt_boxes = _bboxes(detections)
        dt_scores = np.fromiter((d["score"] for d in detections), dtype=np.float64, count=len(detections))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a detection is malformed (needs image_id, category_id, bbox, score): {exc!r}") from None
    _check_boxes(gt_boxes, "ground-truth annotation")
    _check_boxes(dt_boxes, "detection")
    if not np.isfinite(gt_areas).all():
        raise ValueError(f"ground-truth annotation {int(np.flatnonzero(~np.isfinite(gt_areas))[0])} has a bad area")
    if not np.isfinite(dt_scores).all():
        raise ValueError(
            f"detection {int(np.flatnonzero(~np.isfinite(dt_scores))[0])} has a score that is not a number"
        )
    unknown = ~np.isin(dt_images, image_ids)
    if unknown.any():
        ids = ", ".join(str(i) for i in np.unique(dt_images[unknown])[:5])
        raise ValueError(f"detections refer to images the ground truth does not list (image_id {ids})")
    dt_keep = np.isin(dt_classes, cat_ids)

    g_order = np.argsort(gt_images[keep], kind="stable")
    d_order = np.argsort(dt_images[dt_keep], kind="stable")
    return CocoInput(
        image_ids=image_ids,
        categories=categories,
        gt_images=gt_images[keep][g_order],
        gt_boxes=gt_boxes[keep][g_order],
        gt_classes=gt_classes[keep][g_order],
        gt_crowd=gt_crowd[keep][g_order],
        gt_areas=gt_areas[keep][g_order],
        dt_images=dt_images[dt_keep][d_order],
        dt_boxes=dt_boxes[dt_keep][d_order],
        dt_classes=dt_classes[dt_keep][d_order],
        dt_scores=dt_scores[dt_keep][d_order],
    )


def _ints(records: Sequence[Mapping[str, Any]], key: str) -> NDArray[np.int64]:
    return np.fromiter((r[key] for r in records), dtype=np.int64, count=len(records))


def _bboxes(records: Sequence[Mapping[str, Any]]) -> NDArray[np.float64]:
    if not records:
        return np.zeros((0, 4))
    boxes = np.array([r["bbox"] for r in records], dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError("every bbox must be [x, y, width, height]")
    return boxes


def _check_boxes(boxes: NDArray[np.float64], what: str) -> None:
    bad = ~np.isfinite(boxes).all(axis=1) | (boxes[:, 2] < 0) | (boxes[:, 3] < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} {i} has bbox {boxes[i].tolist()}: width and height must be finite and >= 0")
