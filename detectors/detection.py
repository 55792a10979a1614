"""Per-image features of detection outputs, as 1-D arrays for the score detectors.

Detection drift is tested on simple, interpretable distributions: how many boxes a model
returns per image and how large they are. Feed them to :class:`~detectors.WassersteinDrift`
(exact with the ties of integer counts) or :class:`~detectors.KSDrift`, or bin box counts as
classes for :class:`~detectors.ChiSquareDrift`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, IntArray


def boxes_per_image(
    boxes: Sequence[ArrayLike], *, scores: Sequence[ArrayLike] | None = None, min_score: float = 0.0
) -> IntArray:
    """Number of boxes per image, counting only boxes scored at least ``min_score``.

    Parameters
    ----------
    boxes
        One ``(k, 4)`` array of ``x1, y1, x2, y2`` per image (``k`` may be 0).
    scores
        One ``(k,)`` array of box scores per image; required when ``min_score > 0``.
    min_score
        The model's operating threshold: boxes below it are not shown to users, so not counted.
    """
    return np.array([len(b) for b in _kept(boxes, scores, min_score)], dtype=np.int64)


def box_areas(
    boxes: Sequence[ArrayLike],
    *,
    scores: Sequence[ArrayLike] | None = None,
    min_score: float = 0.0,
    image_sizes: ArrayLike | None = None,
) -> FloatArray:
    """Areas of all kept boxes, pooled over images.

    Parameters
    ----------
    boxes
        One ``(k, 4)`` array of ``x1, y1, x2, y2`` per image.
    scores
        One ``(k,)`` array of box scores per image; required when ``min_score > 0``.
    min_score
        Boxes scored below it are left out.
    image_sizes
        ``(n_images, 2)`` widths and heights: areas become fractions of the image, so a change
        of camera resolution is not mistaken for objects changing size. ``None`` keeps pixels².
    """
    kept = _kept(boxes, scores, min_score)
    sizes = None if image_sizes is None else np.asarray(image_sizes, dtype=np.float64).reshape(-1, 2)
    if sizes is not None and len(sizes) != len(kept):
        raise ValueError(f"image_sizes has {len(sizes)} rows for {len(kept)} images")
    areas = []
    for i, b in enumerate(kept):
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        areas.append(area / (sizes[i, 0] * sizes[i, 1]) if sizes is not None else area)
    return np.concatenate(areas) if areas else np.zeros(0)


def _kept(boxes: Sequence[ArrayLike], scores: Sequence[ArrayLike] | None, min_score: float) -> list[FloatArray]:
    arrays = [np.asarray(b, dtype=np.float64).reshape(-1, 4) for b in boxes]
    if min_score <= 0.0:
        return arrays
    if scores is None:
        raise ValueError("scores are needed to apply min_score")
    if len(scores) != len(arrays):
        raise ValueError(f"scores has {len(scores)} images, boxes has {len(arrays)}")
    kept = []
    for b, s in zip(arrays, scores, strict=True):
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if len(s) != len(b):
            raise ValueError(f"an image has {len(b)} boxes but {len(s)} scores")
        kept.append(b[s >= min_score])
    return kept
