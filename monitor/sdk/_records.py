"""Records on both sides of the queue.

Caller's thread (the hot path): the ``check_*`` functions copy the caller's arrays into fresh
numpy arrays of the wire dtype and run the checks that are cheap and catch programming errors
(shape, class count, NaN/infinity, mismatched box arrays). They raise :class:`ValueError` /
:class:`monitor.errors.WireError`. Copying costs well under a microsecond for 512 float32 values
and means the caller may reuse or mutate its buffers as soon as the log call returns.

Sender thread: :func:`encode` turns a queued record into the JSON bytes of one wire record
(arrays as base64 through :func:`monitor.wire.encode_array`, trace ids as hex).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import numpy as np

from monitor.errors import WireError
from monitor.sdk._trace import format_ids
from monitor.wire import DEFAULT_LIMITS, Resources, encode_array, parse_resources

#: Queue item kinds: which endpoint a record goes to.
PREDICTION: Final = "p"
GROUND_TRUTH: Final = "g"
SAMPLE: Final = "s"
PATHS: Final = {PREDICTION: "/v1/predictions", GROUND_TRUTH: "/v1/ground-truth", SAMPLE: "/v1/samples"}

#: Private key of a queued record holding ``(trace_id, span_id)`` as integers.
TRACE_KEY: Final = "_trace"

_F32: Final = np.float32
_MAX_DIM: Final = DEFAULT_LIMITS.max_embedding_dim
_MAX_BOXES: Final = DEFAULT_LIMITS.max_boxes


def check_probabilities(values: Any, n_classes: int | None) -> np.ndarray:
    """A float32 copy of one sample's class probabilities (softmax outputs, summing to 1)."""
    p = np.array(values, dtype=_F32)
    if p.ndim != 1:
        raise WireError(
            f"probabilities must be 1-D (one sample per call), got shape {p.shape}", field="probabilities"
        )
    if n_classes is not None and p.shape[0] != n_classes:
        raise WireError(f"probabilities has {p.shape[0]} values; the model has {n_classes} classes", field="probabilities")
    # One reduction catches NaN, infinity and logits passed for probabilities.
    total = float(np.add.reduce(p, dtype=np.float64))
    if not abs(total - 1.0) <= 0.01:
        raise WireError(f"probabilities sum to {total:.4g}, not 1 (NaN, or logits instead of softmax?)", field="probabilities")
    return p


def check_embedding(values: Any) -> np.ndarray:
    e = np.array(values, dtype=_F32)
    if e.ndim != 1 or not 0 < e.shape[0] <= _MAX_DIM:
        raise WireError(f"embedding must be 1-D with 1 to {_MAX_DIM} values, got shape {e.shape}", field="embedding")
    if not math.isfinite(np.add.reduce(e, dtype=np.float64)):
        raise WireError("embedding contains NaN or infinity", field="embedding")
    return e


def check_boxes(boxes: Any, box_classes: Any, box_scores: Any | None) -> dict[str, Any]:
    """Copies of one image's boxes ``(n, 4)`` x1 y1 x2 y2, classes ``(n,)`` and scores ``(n,)``."""
    b = np.array(boxes, dtype=_F32)
    if b.size % 4 or (b.ndim != 2 and b.size) or b.size // 4 > _MAX_BOXES:
        raise WireError(f"boxes must have shape (n, 4) with n <= {_MAX_BOXES}, got {b.shape}", field="boxes")
    b = b.reshape(-1, 4)
    out: dict[str, Any] = {"boxes": b, "box_classes": _classes(box_classes)}
    lengths = [("boxes", len(b)), ("box_classes", len(out["box_classes"]))]
    if box_scores is not None:
        s = np.array(box_scores, dtype=_F32).reshape(-1)
        out["box_scores"] = s
        lengths.append(("box_scores", len(s)))
    if len({n for _, n in lengths}) != 1:
        raise WireError("lengths differ: " + ", ".join(f"{k}={n}" for k, n in lengths), field="boxes")
    if not math.isfinite(np.add.reduce(b, axis=None, dtype=np.float64)):
        raise WireError("boxes contain NaN or infinity", field="boxes")
    if box_scores is not None and not math.isfinite(np.add.reduce(out["box_scores"], dtype=np.float64)):
        raise WireError("box_scores contain NaN or infinity", field="box_scores")
    return out


def _classes(values: Any) -> np.ndarray | list[str]:
    """Class names stay names (the server maps them); anything else becomes int32 indices."""
    if isinstance(values, (list, tuple)) and values and isinstance(values[0], str):
        return list(values)
    c = np.array(values)
    if c.size and not np.issubdtype(c.dtype, np.integer) and (
        not np.issubdtype(c.dtype, np.floating) or not np.array_equal(c, np.round(c))
    ):
        raise WireError("box_classes must be class indices or class names", field="box_classes")
    return c.astype(np.int32).reshape(-1)


def check_resources(value: Any) -> Resources:
    """A :class:`Resources` as it is (checked when it was built: adapters build one per call and
    share it between the call's predictions), or one checked from a mapping."""
    if type(value) is Resources:
        return value
    if isinstance(value, Mapping):
        resources = parse_resources(dict(value))
        assert resources is not None
        return resources
    raise TypeError(f"resources must be monitor.sdk.Resources or a mapping, not {type(value).__name__}")


def check_latency(latency_ms: float | None) -> None:
    if latency_ms is not None and not latency_ms >= 0:  # also refuses NaN
        raise ValueError(f"latency_ms must be a non-negative number, got {latency_ms!r}")


def unix_seconds(timestamp: float | datetime | None, now: float) -> float:
    if timestamp is None:
        return now
    if isinstance(timestamp, datetime):
        if timestamp.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware (e.g. datetime.now(UTC))")
        return timestamp.timestamp()
    return float(timestamp)


# --------------------------------------------------------------------------------------------
# sender thread


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):  # numpy scalars in a cohort, e.g. a camera index
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False, default=_json_default).encode


def encode(record: dict[str, Any], model: str, version: str | None, embedding_dtype: str) -> bytes:
    """One wire record as JSON bytes; raises ValueError/TypeError when it cannot be encoded."""
    record["model"] = model
    if version is not None:
        record["model_version"] = version
    for key, dtype in (("probabilities", "float32"), ("boxes", "float32"), ("box_scores", "float32")):
        value = record.get(key)
        if value is not None:
            record[key] = encode_array(value, dtype)
    for key, dtype in (("box_classes", "int32"), ("iscrowd", "uint8")):
        value = record.get(key)
        if isinstance(value, np.ndarray):
            record[key] = encode_array(value, dtype)
    emb = record.get("embedding")
    if emb is not None:
        dtype = embedding_dtype
        # float16 overflows to infinity above 65504, which the server refuses: keep float32 then.
        if dtype == "float16" and not math.isfinite(np.add.reduce(emb.astype(np.float16), dtype=np.float64)):
            dtype = "float32"
        record["embedding"] = encode_array(emb, dtype)
    resources = record.get("resources")
    if resources is not None:
        record["resources"] = resources._wire  # made once per Resources, only read here
    ids = record.pop(TRACE_KEY, None)
    if ids is not None:
        record["trace_id"], record["span_id"] = format_ids(ids)
    return _dumps(record).encode()


def encode_sample(record: dict[str, Any], model: str, max_side: int, max_bytes: int) -> bytes:
    """One sample record as JSON bytes, its image thumbnailed (:func:`monitor.sdk._samples.thumbnail`)."""
    from monitor.sdk._samples import thumbnail

    wire = {"prediction_id": record["prediction_id"], "model": model, "timestamp": record["timestamp"],
            "reason": record["reason"], **thumbnail(record["image"], max_side, max_bytes)}  # fmt: skip
    return _dumps(wire).encode()
