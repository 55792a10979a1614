"""Faces and licence plates in sample images: found with OpenCV's shipped Haar cascades, masked
before the bytes are stored.

Detection runs on a grey copy of the image with the cascades that ship inside
opencv-python-headless (``cv2.data.haarcascades``: frontal and profile faces, plates), nothing
fetched. A region is masked with a margin (the cascades box the inner face) by pixelation into
at most 6 × 6 flat blocks (or a strong Gaussian blur). Masking is checked: the masked
image is searched again and whatever is found then is masked too, up to three rounds; an image in
which a face or plate is still found after that is not stored at all.

Every image is decoded and re-encoded, masked or not, so metadata (EXIF: GPS position, camera
serial) never reaches the store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from monitor.server.sample_settings import ModelSamplePolicy

#: Cascades per kind, and the detection parameters that keep false alarms rare on small images.
_CASCADES: Final = {
    "faces": ("haarcascade_frontalface_default.xml", "haarcascade_profileface.xml"),
    "plates": ("haarcascade_russian_plate_number.xml", "haarcascade_license_plate_rus_16stages.xml"),
}
_MIN_SIZE: Final = {"faces": (20, 20), "plates": (24, 8)}
#: Detection runs on a copy at most this long on its longest side (Haar cascades cost grows with
#: the pixels; the SDK's thumbnails are 512 by default): a face must span about 4 % of it.
_DETECT_SIDE: Final = 480
_MARGIN: Final = 0.25
_BLOCKS: Final = 6
_ROUNDS: Final = 3
_ENCODINGS: Final = {"image/jpeg": (".jpg", "IMWRITE_JPEG_QUALITY", 90), "image/png": (".png", None, 0),
                     "image/webp": (".webp", "IMWRITE_WEBP_QUALITY", 90)}  # fmt: skip


class Undecodable(ValueError):
    """The bytes claim an image format but OpenCV cannot decode them."""


@dataclass(frozen=True, slots=True)
class Protected:
    """What privacy made of an image: the bytes to store (None: dropped), and what was found."""

    data: bytes | None
    media_type: str
    width: int
    height: int
    faces: int
    plates: int
    #: the policy applied, e.g. ``faces:mask,plates:keep``
    masking: str
    #: stored unmasked under a ``keep`` policy: its views are PII exposures
    exposed: bool
    #: why it was dropped (``faces`` / ``plates`` / ``residual``), None when stored
    dropped: str | None = None


#: Cascades per thread: a CascadeClassifier keeps working buffers, so one object is not shared by
#: the server's threads (loading one takes ~50 ms, once per thread and cascade).
_LOCAL = threading.local()


def _cascade(name: str) -> Any:
    import cv2

    loaded: dict[str, Any] = _LOCAL.__dict__.setdefault("cascades", {})
    classifier = loaded.get(name)
    if classifier is None:
        classifier = cv2.CascadeClassifier(cv2.data.haarcascades + name)  # type: ignore[attr-defined]
        if classifier.empty():  # pragma: no cover - an OpenCV wheel without its data
            raise RuntimeError(f"OpenCV's cascade {name} is missing; install opencv-python-headless<5 (it ships them)")
        loaded[name] = classifier
    return classifier


def decode(data: bytes) -> np.ndarray:
    """BGR (or BGRA, grey) pixels of an encoded image."""
    import cv2

    pixels = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise Undecodable("image: the bytes do not decode")
    if pixels.dtype != np.uint8:  # 16-bit PNG
        pixels = (pixels.astype(np.uint16) >> 8).astype(np.uint8)
    return pixels


def encode(pixels: np.ndarray, media_type: str) -> bytes:
    import cv2

    suffix, flag, quality = _ENCODINGS[media_type]
    params = [int(getattr(cv2, flag)), quality] if flag else []
    ok, buffer = cv2.imencode(suffix, pixels, params)
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image it decoded
        raise RuntimeError(f"OpenCV could not encode {media_type}")
    return bytes(buffer.tobytes())


def _grey(pixels: np.ndarray) -> np.ndarray:
    import cv2

    if pixels.ndim == 2:
        return pixels
    code = cv2.COLOR_BGRA2GRAY if pixels.shape[2] == 4 else cv2.COLOR_BGR2GRAY
    return np.asarray(cv2.cvtColor(pixels, code))


def find(pixels: np.ndarray, kind: str) -> list[tuple[int, int, int, int]]:
    """Regions ``(x, y, w, h)`` of ``kind`` (faces or plates) found in the image."""
    import cv2

    grey = _grey(pixels)
    scale = min(1.0, _DETECT_SIDE / max(grey.shape))
    if scale < 1.0:
        grey = cv2.resize(grey, (round(grey.shape[1] * scale), round(grey.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    grey = cv2.equalizeHist(grey)
    min_w, min_h = _MIN_SIZE[kind]
    if grey.shape[0] < min_h or grey.shape[1] < min_w:
        return []
    out: list[tuple[int, int, int, int]] = []
    for name in _CASCADES[kind]:
        found = _cascade(name).detectMultiScale(grey, scaleFactor=1.1, minNeighbors=4, minSize=(min_w, min_h))
        out += [(int(x / scale), int(y / scale), int(np.ceil(w / scale)), int(np.ceil(h / scale))) for x, y, w, h in found]
    return out


def mask(pixels: np.ndarray, regions: list[tuple[int, int, int, int]], method: str) -> np.ndarray:
    """A copy with each region (plus a margin) pixelated or blurred beyond recognition."""
    import cv2

    out = pixels.copy()
    height, width = out.shape[:2]
    for x, y, w, h in regions:
        dx, dy = int(w * _MARGIN), int(h * _MARGIN)
        x0, y0, x1, y1 = max(0, x - dx), max(0, y - dy), min(width, x + w + dx), min(height, y + h + dy)
        if x1 <= x0 or y1 <= y0:
            continue
        patch = out[y0:y1, x0:x1]
        if method == "blur":
            k = max(3, (max(x1 - x0, y1 - y0) // 2) | 1)
            out[y0:y1, x0:x1] = cv2.GaussianBlur(patch, (k, k), 0)
        else:
            # at most _BLOCKS × _BLOCKS flat blocks: no eye, nose or mouth survives
            small = cv2.resize(patch, (min(_BLOCKS, x1 - x0), min(_BLOCKS, y1 - y0)), interpolation=cv2.INTER_AREA)
            out[y0:y1, x0:x1] = cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    return out


def protect(data: bytes, media_type: str, policy: ModelSamplePolicy, method: str) -> Protected:
    """Apply the model's privacy policy to an encoded image; returns what to store."""
    pixels = decode(data)
    height, width = pixels.shape[:2]
    masking = f"faces:{policy.faces},plates:{policy.plates}"
    found = {kind: find(pixels, kind) for kind in ("faces", "plates")}
    counts = {kind: len(regions) for kind, regions in found.items()}
    for kind in ("faces", "plates"):
        if found[kind] and getattr(policy, kind) == "drop":
            return Protected(None, media_type, width, height, counts["faces"], counts["plates"], masking, False, kind)
    masked = [kind for kind in ("faces", "plates") if getattr(policy, kind) == "mask"]
    for _ in range(_ROUNDS):
        regions = [r for kind in masked for r in found[kind]]
        if not regions:
            break
        pixels = mask(pixels, regions, method)
        found = {kind: find(pixels, kind) if kind in masked else [] for kind in ("faces", "plates")}
    else:
        if any(found[kind] for kind in masked):
            return Protected(None, media_type, width, height, counts["faces"], counts["plates"], masking, False, "residual")
    return Protected(
        encode(pixels, media_type), media_type, width, height, counts["faces"], counts["plates"], masking, policy.exposes
    )
