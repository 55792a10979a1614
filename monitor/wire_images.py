"""Sample images on the wire, shared by the SDK (which sends them) and the server (which checks them).

A sample is the input image of one prediction, kept by the SDK's keep policy and sent to
``POST /v1/samples``::

    {"prediction_id": "p-1", "model": "shelf", "timestamp": 1764064800.0,
     "image": {"base64": "...", "media_type": "image/jpeg"}, "reason": "low_confidence",
     "source_size": [1920, 1080]}

``source_size`` is the size of the image the model saw when the sender shrank it: detection
boxes are in its pixels.

Only JPEG, PNG and WebP are accepted. Their dimensions are read from the file header
(:func:`image_info`) before anything is decoded, so an image over the size limits is refused
without being decompressed. Pure: standard library only, no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from monitor.errors import LimitExceeded, WireError
from monitor.wire import ModelSpec, parse_timestamp

__all__ = ["MEDIA_TYPES", "REASONS", "ImageInfo", "ImageLimits", "Sample", "image_info", "parse_sample"]

#: The encodings a sample may use.
MEDIA_TYPES: Final = ("image/jpeg", "image/png", "image/webp")
#: Why the SDK kept an image (``manual``: sent by other means than the keep policy).
REASONS: Final = ("error", "low_confidence", "rate", "reservoir", "manual")
_FIELDS: Final = frozenset({"prediction_id", "model", "timestamp", "image", "reason", "source_size"})


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """What a sample may weigh; the server's ``samples.max_bytes`` / ``max_side`` may lower them."""

    max_bytes: int = 2 * 1024 * 1024
    max_side: int = 4096
    max_id_chars: int = 128


DEFAULT_IMAGE_LIMITS: Final = ImageLimits()


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """An encoded image as its header describes it."""

    media_type: str
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Sample:
    """One validated sample record."""

    prediction_id: str
    model: str
    captured_at: datetime
    data: bytes
    info: ImageInfo
    reason: str
    #: (width, height) of the image the model saw, when the sender shrank it (boxes are in its pixels)
    source_size: tuple[int, int] | None = None


def image_info(data: bytes) -> ImageInfo:
    """The media type and dimensions of an encoded JPEG, PNG or WebP, read from its header.

    Raises :class:`WireError` for anything else, or a header that does not say its size.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise WireError("image: a PNG without its IHDR header", field="image")
        width, height = struct.unpack(">II", data[16:24])
        return _checked("image/png", width, height)
    if data[:3] == b"\xff\xd8\xff":
        return _checked("image/jpeg", *_jpeg_size(data))
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _checked("image/webp", *_webp_size(data))
    raise WireError("image must be a JPEG, PNG or WebP file", field="image")


def _checked(media_type: str, width: int, height: int) -> ImageInfo:
    if width < 1 or height < 1:
        raise WireError(f"image: the {media_type} header says {width}×{height} pixels", field="image")
    return ImageInfo(media_type, width, height)


#: JPEG start-of-frame markers (every SOFn but DHT C4, JPG C8 and DAC CC), which carry the size.
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise WireError("image: a JPEG whose segments do not parse", field="image")
        marker = data[i + 1]
        if marker == 0xFF:  # fill bytes
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        if marker in _SOF:
            if i + 9 > n:
                break
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        if marker == 0xDA or length < 2:  # start of scan before any frame header
            break
        i += 2 + length
    raise WireError("image: a JPEG without a frame header (SOF)", field="image")


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise WireError("image: a WebP file whose header does not parse", field="image")


def check_image(data: bytes, limits: ImageLimits = DEFAULT_IMAGE_LIMITS) -> ImageInfo:
    """:func:`image_info` plus the limits: bytes, and the longest side."""
    if len(data) > limits.max_bytes:
        raise LimitExceeded(f"image is {len(data)} bytes; the limit is {limits.max_bytes}", field="image")
    info = image_info(data)
    if max(info.width, info.height) > limits.max_side:
        raise LimitExceeded(
            f"image is {info.width}×{info.height} pixels; the longest side may be {limits.max_side}", field="image"
        )
    return info


def parse_sample(
    record: Any, lookup: Callable[[str], ModelSpec | None], *, now: datetime, limits: ImageLimits = DEFAULT_IMAGE_LIMITS
) -> Sample:
    """Validate one sample record; raises :class:`WireError` with a reason a person can act on."""
    if not isinstance(record, dict):
        raise WireError("a sample record must be a JSON object")
    unknown = record.keys() - _FIELDS
    if unknown:
        first = sorted(map(str, unknown))[0]
        raise WireError(f"unknown field {first[:64]!r} (allowed: {', '.join(sorted(_FIELDS))})", field=first)
    pid = record.get("prediction_id")
    if not isinstance(pid, str) or not pid or len(pid) > limits.max_id_chars or "\x00" in pid:
        raise WireError(f"prediction_id must be 1 to {limits.max_id_chars} characters", field="prediction_id")
    name = record.get("model")
    if not isinstance(name, str) or not name:
        raise WireError("model is required", field="model")
    spec = lookup(name)
    if spec is None:
        raise WireError(f"unknown model {name[:128]!r}; register it with PUT /v1/models/{name[:128]}", field="model")
    raw_ts = record.get("timestamp")
    captured = now if raw_ts is None else parse_timestamp(raw_ts)
    reason = record.get("reason", "manual")
    if reason not in REASONS:
        raise WireError(f"reason must be one of {', '.join(REASONS)}", field="reason")
    data = decode_image(record.get("image"), limits)
    source = record.get("source_size")
    if source is not None and not (
        isinstance(source, list) and len(source) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 1 << 16 for v in source)
    ):  # fmt: skip
        raise WireError("source_size must be [width, height] in pixels", field="source_size")
    return Sample(pid, spec.name, captured, data, check_image(data, limits), reason, tuple(source) if source else None)


def decode_image(value: Any, limits: ImageLimits = DEFAULT_IMAGE_LIMITS) -> bytes:
    """The bytes of ``{"base64": ..., "media_type": ...}``; the media type must match the bytes."""
    if not isinstance(value, Mapping) or set(value) - {"base64", "media_type"} or not isinstance(value.get("base64"), str):
        raise WireError('image must be {"base64": "...", "media_type": "image/jpeg" | "image/png" | "image/webp"}', field="image")
    text: str = value["base64"]
    if (len(text) // 4) * 3 > limits.max_bytes + 3:
        raise LimitExceeded(f"image is larger than {limits.max_bytes} bytes", field="image")
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError("image.base64 is not valid base64", field="image") from None
    declared: Any = value.get("media_type")
    if declared is not None and declared not in MEDIA_TYPES:
        raise WireError(f"image.media_type must be one of {', '.join(MEDIA_TYPES)}", field="image")
    if declared is not None and image_info(data).media_type != declared:
        raise WireError(f"image.media_type says {declared} but the bytes are {image_info(data).media_type}", field="image")
    return data


def encode_image(data: bytes, media_type: str) -> dict[str, str]:
    """The wire form of an encoded image."""
    return {"base64": base64.b64encode(data).decode("ascii"), "media_type": media_type}
