"""Boxes and labels over a sample, as the browser shows it: drawn into the image (OpenCV) or as
JSON the console draws itself (SVG over an ``<img>``).

Boxes are stored in the pixels of the image the model saw; a sample the SDK shrank is smaller, so
coordinates are scaled by ``width / source_width``. Predictions are drawn in orange with their
class and score, ground truth in green; a classification sample gets a caption with the predicted
class, its confidence and the true class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from monitor.server.services import privacy
from monitor.server.services.sample_views import SampleView

_PREDICTED: Final = (0, 140, 255)  # BGR orange
_TRUTH: Final = (60, 200, 60)  # BGR green
#: Tiny images (8×8 digits) are enlarged so that a caption fits.
_MIN_SIDE: Final = 256


@dataclass(frozen=True)
class Box:
    kind: str  # "prediction" | "ground_truth"
    cls: str
    score: float | None
    #: x1, y1, x2, y2 in the sample's pixels
    box: tuple[float, float, float, float]


@dataclass(frozen=True)
class Overlay:
    """What to draw over a sample of ``width`` × ``height`` pixels."""

    width: int
    height: int
    boxes: list[Box]
    caption: str


def overlay(view: SampleView) -> Overlay:
    sx = view.width / max(1, view.source_width)
    sy = view.height / max(1, view.source_height)
    boxes: list[Box] = []

    def add(kind: str, coords: list[list[float]] | None, classes: list[str] | None, scores: list[float] | None) -> None:
        for j, (x1, y1, x2, y2) in enumerate(coords or []):
            cls = classes[j] if classes and j < len(classes) else "?"
            score = scores[j] if scores and j < len(scores) else None
            boxes.append(Box(kind, cls, score, (round(x1 * sx, 2), round(y1 * sy, 2), round(x2 * sx, 2), round(y2 * sy, 2))))

    add("prediction", view.boxes, view.box_classes, view.box_scores)
    add("ground_truth", view.gt_boxes, view.gt_classes, None)
    caption = ""
    if view.predicted_class is not None:
        caption = f"predicted {view.predicted_class}"
        if view.confidence is not None:
            caption += f" ({view.confidence:.2f})"
    if view.label is not None:
        caption += f"{' · ' if caption else ''}true {view.label}"
    return Overlay(view.width, view.height, boxes, caption)


def draw(data: bytes, view: SampleView, *, threshold: float | None = None) -> bytes:
    """The sample as PNG with its overlay drawn in; prediction boxes scored below ``threshold``
    are left out (None: all)."""
    import cv2

    pixels = privacy.decode(data)
    if pixels.ndim == 2:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    elif pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    scale = max(1.0, _MIN_SIDE / max(pixels.shape[:2]))
    if scale > 1.0:
        pixels = cv2.resize(pixels, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    spec = overlay(view)
    thickness = max(1, round(max(pixels.shape[:2]) / 300))
    font = 0.4 * thickness
    for box in spec.boxes:
        if box.kind == "prediction" and threshold is not None and (box.score or 0.0) < threshold:
            continue
        colour = _PREDICTED if box.kind == "prediction" else _TRUTH
        x1, y1, x2, y2 = (round(v * scale) for v in box.box)
        cv2.rectangle(pixels, (x1, y1), (x2, y2), colour, thickness)
        text = box.cls if box.score is None else f"{box.cls} {box.score:.2f}"
        cv2.putText(pixels, text, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, font, colour, thickness, cv2.LINE_AA)
    if spec.caption:
        band = np.zeros((int(22 * thickness), pixels.shape[1], 3), dtype=np.uint8)
        cv2.putText(band, spec.caption, (4, int(16 * thickness)), cv2.FONT_HERSHEY_SIMPLEX, font, (255, 255, 255),
                    thickness, cv2.LINE_AA)  # fmt: skip
        pixels = np.vstack([band, pixels])
    return privacy.encode(pixels, "image/png")


def overlay_json(view: SampleView) -> dict[str, Any]:
    spec = overlay(view)
    return {
        "width": spec.width, "height": spec.height, "caption": spec.caption,
        "boxes": [{"kind": b.kind, "class": b.cls, "score": b.score, "box": list(b.box)} for b in spec.boxes],
    }  # fmt: skip
