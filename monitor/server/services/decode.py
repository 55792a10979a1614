"""Stored packed columns back to numpy, shared by every job that reads predictions.

Arrays are stored as little-endian bytes (see :mod:`monitor.server.store.tables`); this module is
the one place that knows how to turn them into what :mod:`monitor.metrics` takes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from monitor.metrics import DetectionState, detection_state


def image_key(prediction_id: str) -> int:
    """A stable int64 per image: it orders tied detection scores across images."""
    return int.from_bytes(hashlib.blake2b(prediction_id.encode(), digest_size=8).digest(), "little", signed=True)


def probability_matrix(blobs: Sequence[bytes], num_classes: int) -> np.ndarray:
    """Stored float32 probability rows as an N × C matrix. Rows logged before the model's class
    list grew are shorter: the classes added since had probability 0 for them (classes are only
    ever appended, see :func:`monitor.server.services.models.register_model`)."""
    width = 4 * num_classes
    if all(len(b) == width for b in blobs):
        return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), num_classes)
    out = np.zeros((len(blobs), num_classes), dtype=np.float32)
    for i, blob in enumerate(blobs):
        row = np.frombuffer(blob, dtype="<f4")
        out[i, : row.size] = row
    return out


@dataclass(frozen=True, slots=True)
class StoredImage:
    """One labelled detection prediction as stored: its id and packed arrays."""

    prediction_id: str
    boxes: bytes | None
    box_classes: bytes | None
    box_scores: bytes | None
    gt_boxes: bytes | None
    gt_classes: bytes | None
    gt_crowd: bytes | None


def images_detection_state(images: Sequence[StoredImage]) -> DetectionState:
    """The metrics engine's matching state of stored images (their ground truth against their
    detections), each image keyed by :func:`image_key` of its prediction id."""
    g_img, g_box, g_cls, g_crowd, d_img, d_box, d_cls, d_score = ([] for _ in range(8))  # type: ignore[var-annotated]
    for im in images:
        key = image_key(im.prediction_id)
        gb = np.frombuffer(im.gt_boxes or b"", "<f4").reshape(-1, 4)
        g_box.append(gb)
        g_cls.append(np.frombuffer(im.gt_classes or b"", "<i4"))
        g_crowd.append(np.frombuffer(im.gt_crowd, "u1") if im.gt_crowd else np.zeros(len(gb), np.uint8))
        g_img.append(np.full(len(gb), key, np.int64))
        db = np.frombuffer(im.boxes or b"", "<f4").reshape(-1, 4)
        d_box.append(db)
        d_cls.append(np.frombuffer(im.box_classes or b"", "<i4"))
        d_score.append(np.frombuffer(im.box_scores or b"", "<f4"))
        d_img.append(np.full(len(db), key, np.int64))
    if not images:
        return DetectionState.empty()
    return detection_state(
        gt_images=np.concatenate(g_img), gt_boxes=np.concatenate(g_box).astype(np.float64),
        gt_classes=np.concatenate(g_cls).astype(np.int64), gt_crowd=np.concatenate(g_crowd),
        dt_images=np.concatenate(d_img), dt_boxes=np.concatenate(d_box).astype(np.float64),
        dt_classes=np.concatenate(d_cls).astype(np.int64), dt_scores=np.concatenate(d_score).astype(np.float64),
        n_images=len(images),
    )  # fmt: skip
