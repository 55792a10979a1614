"""Compile every kernel into numba's disk cache ahead of the first real call.

numba compiles one machine-code version per argument *type* (dtype, dimensions, layout, whether
the array is read-only), so a warm-up only helps if it passes the types real work passes. These
calls go through the same public functions, with the types each caller gives them:

==========================  ==================================================================
probability scan            float32 and float64 probabilities from files (``cvmon eval
                            classification``), read-only float32 rows stored by the server
                            (the evaluate job)
COCO matching and AP        a parsed COCO file in image chunks (``cvmon eval coco``), the chunk
                            states merged two at a time and many at a time, and states read back
                            from their bytes (hour states merged by the jobs)
==========================  ==================================================================

``tests/metrics/test_warm.py`` checks that after :func:`warm_kernels` in a fresh cache those
commands compile nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._calibration import probability_states
from ._coco import coco_input
from ._codec import readonly
from ._detection import DetectionState, detection_metrics


def warm_kernels() -> None:
    """Run every compiled kernel of :mod:`monitor.metrics` once, on a few rows, with the argument
    types the commands and jobs use (without numba: a few milliseconds of Python)."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 1, 0, 2], dtype=np.int64)
    p64 = rng.dirichlet(np.ones(3), size=labels.size)
    for probabilities in (p64, p64.astype(np.float32), readonly(p64.astype(np.float32))):
        probability_states(labels, probabilities, classwise=True, samples=True)

    data = coco_input(*_tiny_coco())
    parts = [data.detection_state(start, stop) for start, stop in data.chunks(1)]
    stored = [DetectionState.from_bytes(p.to_bytes()) for p in parts]
    for states in (parts, parts[:2], stored, stored[:2]):
        detection_metrics(DetectionState.merge(*states), score_threshold=0.5)


def _tiny_coco() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Three images, two classes, a crowd box, hits and misses: every branch of the matching."""
    images = [{"id": i, "width": 64, "height": 64} for i in (1, 2, 3)]
    annotations: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for i, image in enumerate(images):
        for k in range(3):
            box = [4.0 + 10 * k, 4.0 + 3 * i, 8.0 + 2 * k, 8.0 + k]
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": 1 + k % 2,
                                "bbox": box, "area": box[2] * box[3], "iscrowd": int(k == 2 and i == 1)})  # fmt: skip
            shifted = [box[0] + 1.0 * k, box[1], box[2], box[3]]
            detections.append({"image_id": image["id"], "category_id": 1 + (k + i) % 2, "bbox": shifted,
                               "score": 0.9 - 0.2 * k})  # fmt: skip
    categories = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    return {"images": images, "annotations": annotations, "categories": categories}, detections
