"""Which input images the SDK keeps, and how a kept image becomes a small sample.

The decision runs on the caller's thread and costs a few hundred nanoseconds when nothing is
kept: a CRC-32 of the prediction id against the rate, a comparison of the confidence, a step of
the reservoir. Only a kept image is copied (an array; encoded bytes are immutable), and it is
thumbnailed and encoded on the sender thread (:func:`thumbnail`), never on the caller's.

Order of the rules (the first that keeps wins; ``reason`` on the wire says which):

1. ``error``: an inference that raised (``Client.timed``) keeps its image, when ``keep_errors``.
2. ``low_confidence``: the top probability (classification) is below ``low_confidence``, or a
   detection has a box scored in ``[detection_floor, low_confidence)``, the band where the
   model is unsure.
3. ``rate``: a deterministic share of prediction ids (CRC-32, as for embeddings), per cohort
   value when ``cohort_rates`` names one, else ``rate``.
4. ``reservoir``: a uniform sample of ``reservoir_per_hour`` of the hour's images that no rule
   above kept (Vitter's algorithm R); sent when the hour ends, and at :meth:`Client.close`.

Rules 1 to 3 keep at most ``max_per_hour`` images an hour, so a broken camera that makes every
prediction unsure cannot flood the link.
"""

from __future__ import annotations

import io
import os
import random
import threading
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import numpy as np

from monitor.errors import MissingExtra
from monitor.wire_images import DEFAULT_IMAGE_LIMITS, encode_image, image_info

_SCALE: Final = 1_000_000
#: JPEG qualities tried in turn before the image is shrunk further to fit ``max_bytes``.
_QUALITIES: Final = (85, 70, 55, 40)


@dataclass(frozen=True, slots=True)
class SamplePolicy:
    """Which input images a :class:`~monitor.sdk.Client` keeps as samples, and how small.

    ``rate``: share of predictions kept (0 to 1); ``cohort_rates``: per cohort value, e.g.
    ``{"camera": {"cam-3": 0.2}}`` (the first cohort field that names a rate wins).
    ``keep_errors``: keep the image of an inference that raised. ``low_confidence``: keep
    images the model is unsure about (None: off); ``detection_floor``: the lowest box score that
    counts as unsure for a detector (lower ones are background). ``reservoir_per_hour``: a
    uniform sample of this many of each hour's images. ``max_per_hour``: a cap on the images
    kept by the rules other than the reservoir. ``max_side`` / ``max_bytes``: thumbnails are
    shrunk to this longest side and re-encoded (JPEG) until they weigh at most this.
    """

    rate: float = 0.0
    cohort_rates: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    keep_errors: bool = True
    low_confidence: float | None = 0.5
    detection_floor: float = 0.1
    reservoir_per_hour: int = 0
    max_per_hour: int = 1000
    max_side: int = 512
    max_bytes: int = 96 * 1024

    def __post_init__(self) -> None:
        rates = [self.rate, *(r for values in self.cohort_rates.values() for r in values.values())]
        if not all(isinstance(r, (int, float)) and 0.0 <= r <= 1.0 for r in rates):
            raise ValueError("sample rates must lie in [0, 1]")
        if self.low_confidence is not None and not 0.0 < self.low_confidence <= 1.0:
            raise ValueError("low_confidence must lie in (0, 1] (or be None)")
        if not 0.0 <= self.detection_floor < 1.0:
            raise ValueError("detection_floor must lie in [0, 1)")
        if self.reservoir_per_hour < 0 or self.max_per_hour < 0:
            raise ValueError("reservoir_per_hour and max_per_hour must be >= 0")
        if not 16 <= self.max_side <= DEFAULT_IMAGE_LIMITS.max_side:
            raise ValueError(f"max_side must be 16 to {DEFAULT_IMAGE_LIMITS.max_side} pixels")
        if not 1024 <= self.max_bytes <= DEFAULT_IMAGE_LIMITS.max_bytes:
            raise ValueError(f"max_bytes must be 1024 to {DEFAULT_IMAGE_LIMITS.max_bytes}")


@cache
def pillow_available() -> bool:
    """Whether the ``images`` extra (Pillow) is installed; imported once, on the first array."""
    try:
        import PIL.Image  # noqa: F401
    except ImportError:
        return False
    return True


def check_image(image: Any) -> Any:
    """Refuse, on the caller's thread, what could never become a sample (programming errors)."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return image
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))):
            raise ValueError(f"image must be an H×W×C uint8 array (C = 1, 3 or 4, RGB order), got {image.dtype} {image.shape}")
        if not pillow_available():
            raise MissingExtra("encoding image arrays", "images")
        return image
    raise TypeError(f"image must be encoded bytes (JPEG, PNG, WebP) or a uint8 numpy array, not {type(image).__name__}")


class Keeper:
    """The keep policy's state in one process: hourly counts and the reservoir."""

    __slots__ = ("_cohort_cuts", "_hour", "_kept", "_lock", "_low", "_rate_cut", "_reservoir", "_rng", "_seen", "policy")

    def __init__(self, policy: SamplePolicy) -> None:
        self.policy = policy
        self._rate_cut = int(policy.rate * _SCALE)
        self._cohort_cuts = {k: {v: int(r * _SCALE) for v, r in values.items()} for k, values in policy.cohort_rates.items()}
        self._low = policy.low_confidence
        self._lock = threading.Lock()
        self._rng = random.Random(os.urandom(8))
        self._hour = -1
        self._kept = 0
        self._seen = 0
        self._reservoir: list[dict[str, Any]] = []

    def reason(self, pid: str, cohort: Mapping[str, Any] | None, *, error: bool, unsure: bool) -> str | None:
        """Why rules 1 to 3 keep this prediction's image, or None."""
        policy = self.policy
        if error and policy.keep_errors:
            reason: str | None = "error"
        elif unsure:
            reason = "low_confidence"
        else:
            cut = self._rate_cut
            if cohort and self._cohort_cuts:
                for key, cuts in self._cohort_cuts.items():
                    value = cohort.get(key)
                    if value is not None and str(value) in cuts:
                        cut = cuts[str(value)]
                        break
            reason = "rate" if cut and zlib.crc32(pid.encode()) % _SCALE < cut else None
        return reason

    def unsure_classification(self, probabilities: np.ndarray | None, confidence: float | None) -> bool:
        low = self._low
        if low is None:
            return False
        if probabilities is not None:
            # for a few classes a list's max is a third of numpy's per-call overhead
            top = max(probabilities.tolist()) if probabilities.size <= 64 else float(probabilities.max())
            return bool(top < low)
        return confidence is not None and confidence < low

    def unsure_detection(self, scores: np.ndarray) -> bool:
        low = self._low
        if low is None or not scores.size:
            return False
        return bool(((scores >= self.policy.detection_floor) & (scores < low)).any())

    def offer(self, pid: str, ts: float, image: Any, reason: str | None) -> list[dict[str, Any]]:
        """Offer a prediction's image; returns the sample records to send now: this one when a
        rule keeps it, and the reservoir of an hour that has ended. Only a kept image is copied."""
        k = self.policy.reservoir_per_hour
        if reason is None and not k:
            return []
        hour = int(ts // 3600)
        out: list[dict[str, Any]] = []
        with self._lock:
            if hour != self._hour:
                out, self._reservoir = self._reservoir, []
                self._hour, self._kept, self._seen = hour, 0, 0
            if reason is not None:
                if self._kept < self.policy.max_per_hour:
                    self._kept += 1
                    out.append(_record(pid, ts, image, reason))
                return out
            self._seen += 1
            if len(self._reservoir) < k:
                self._reservoir.append(_record(pid, ts, image, "reservoir"))
            else:
                slot = int(self._rng.random() * self._seen)
                if slot < k:
                    self._reservoir[slot] = _record(pid, ts, image, "reservoir")
        return out

    def drain(self) -> list[dict[str, Any]]:
        """The reservoir's records (at close: the hour is cut short)."""
        with self._lock:
            out, self._reservoir = self._reservoir, []
        return out


def _record(pid: str, ts: float, image: Any, reason: str) -> dict[str, Any]:
    """A sample record with a private copy of the image: the caller may reuse its buffer."""
    if isinstance(image, np.ndarray):
        image = image.copy()
    elif not isinstance(image, bytes):
        image = bytes(image)
    return {"prediction_id": pid, "timestamp": ts, "image": image, "reason": reason}


# --------------------------------------------------------------------------------------------
# sender thread


def thumbnail(image: bytes | np.ndarray, max_side: int, max_bytes: int) -> dict[str, Any]:
    """The wire form of a kept image: as it is when it is an encoded image within the caps, else
    shrunk to ``max_side`` and re-encoded as JPEG until it weighs at most ``max_bytes``."""
    if isinstance(image, bytes):
        info = image_info(image)
        if len(image) <= max_bytes and max(info.width, info.height) <= max_side:
            return {"image": encode_image(image, info.media_type)}
        source = [info.width, info.height]
    else:
        source = [int(image.shape[1]), int(image.shape[0])]
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingExtra("thumbnailing sample images", "images") from exc
    picture: Image.Image
    if isinstance(image, bytes):
        opened = Image.open(io.BytesIO(image))
        opened.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale directly
        picture = opened
    else:
        array = image[:, :, 0] if image.ndim == 3 and image.shape[2] == 1 else image
        picture = Image.fromarray(np.ascontiguousarray(array))
    if picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    side = max_side
    while True:
        small = picture.copy()
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
        for quality in _QUALITIES:
            buffer = io.BytesIO()
            small.save(buffer, format="JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                out: dict[str, Any] = {"image": encode_image(buffer.getvalue(), "image/jpeg")}
                if list(small.size) != source:
                    out["source_size"] = source
                return out
        if side <= 16:
            raise ValueError(f"the image does not fit in {max_bytes} bytes even at 16 pixels")
        side = max(16, int(side * 0.75))
