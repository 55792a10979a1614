"""The wire format shared by the SDK (which encodes) and the server (which decodes and validates).

A prediction or ground-truth record is a JSON object. Arrays travel either as JSON lists or, much
cheaper, as ``{"base64": "...", "dtype": "float16" | "float32" | "int16" | "int32"}`` holding
little-endian bytes. Decoding checks every limit *before* allocating, so a hostile 10⁸-element
array is refused without being materialised.

Validation here is hand-written rather than done by pydantic on purpose: the ingest path checks
tens of thousands of records per second on two cores and a per-record model instance costs more
than the whole budget. The API still publishes a pydantic schema of the same records for
/docs (monitor.server.api.schemas); a test keeps the two in agreement.

Everything in this module is pure: no I/O, no clock (``now`` is a parameter).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

import numpy as np

from monitor.errors import LimitExceeded, WireError

__all__ = [
    "ARRAY_DTYPES",
    "GroundTruth",
    "Limits",
    "ModelSpec",
    "Prediction",
    "Resources",
    "claimed_model",
    "decode_array",
    "encode_array",
    "format_timestamp",
    "parse_ground_truth",
    "parse_prediction",
    "parse_resources",
    "parse_timestamp",
    "storable",
    "text_problem",
]

Task = Literal["classification", "detection"]
TASKS: Final = ("classification", "detection")

#: dtypes an array may declare on the wire, mapped to their little-endian numpy dtype.
ARRAY_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "float16": np.dtype("<f2"),
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int16": np.dtype("<i2"),
    "int32": np.dtype("<i4"),
    "int64": np.dtype("<i8"),
    "uint8": np.dtype("u1"),
}
_FLOAT_DTYPES: Final = frozenset({"float16", "float32", "float64"})
_INT_DTYPES: Final = frozenset({"int16", "int32", "int64", "uint8"})
#: Integer arrays hold class indices and 0/1 flags, stored as int32 or uint8.
_INT_MIN: Final = -(2**31)
_INT_MAX: Final = 2**31 - 1
#: Integers in a cohort are stored in JSON columns; PostgreSQL's binary COPY path needs int64.
_COHORT_INT: Final = 2**63

STATUS_OK: Final = 0
STATUS_ERROR: Final = 1
_STATUS: Final = {"ok": STATUS_OK, "error": STATUS_ERROR}

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_SPAN_ID = re.compile(r"[0-9a-f]{16}")
#: Model names are registered through a path parameter: at most this many characters of this pattern.
MAX_MODEL_CHARS: Final = 128
MODEL_NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$"
#: The earliest timestamp accepted; older values are almost always a unit mistake (ms vs s).
_EPOCH_MIN: Final = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-record limits. The body limit lives in the server settings."""

    max_id_chars: int = 128
    max_version_chars: int = 64
    max_string_chars: int = 256
    max_cohort_keys: int = 16
    max_embedding_dim: int = 8192
    max_boxes: int = 1000
    max_classes: int = 100_000
    max_future: timedelta = timedelta(days=1)
    max_batch_size: int = 1_000_000


DEFAULT_LIMITS: Final = Limits()


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the validator needs to know about a registered model."""

    name: str
    task: Task
    classes: tuple[str, ...]
    operating_threshold: float = 0.5
    class_index: Mapping[str, int] = field(default_factory=dict, compare=False)

    @classmethod
    def create(
        cls, name: str, task: Task, classes: tuple[str, ...] | list[str], operating_threshold: float = 0.5
    ) -> ModelSpec:
        classes = tuple(classes)
        return cls(name, task, classes, operating_threshold, {c: i for i, c in enumerate(classes)})


@dataclass(frozen=True, slots=True)
class Resources:
    """What the inference call that made a prediction used: ``resources`` on the wire, optional.

    ``device``: ``"cpu"`` or the accelerator's model name as its driver reports it (e.g.
    ``"NVIDIA A100-SXM4-80GB"``); ``batch_size``: the inputs of the call (its latency is shared by
    that many predictions); ``cpu_time_ms``: CPU time of the serving process over the call;
    ``gpu_utilization_ratio`` (0 to 1) and ``gpu_memory_bytes`` (used on the device) as NVML
    reported them at the end of the call. Every field is optional. Building one checks it, so a
    record never carries an impossible value (:class:`WireError` says which).
    """

    device: str | None = None
    batch_size: int | None = None
    cpu_time_ms: float | None = None
    gpu_utilization_ratio: float | None = None
    gpu_memory_bytes: int | None = None
    #: the JSON object, made once: one Resources is shared by the predictions of a call
    _wire: dict[str, str | int | float] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_resources(self, DEFAULT_LIMITS)
        values = (self.device, self.batch_size, self.cpu_time_ms, self.gpu_utilization_ratio, self.gpu_memory_bytes)
        wire = {k: v for k, v in zip(RESOURCE_FIELDS, values, strict=True) if v is not None}
        object.__setattr__(self, "_wire", wire)

    def to_wire(self) -> dict[str, str | int | float]:
        """The JSON object of the record's ``resources`` (fields that are set)."""
        return dict(self._wire)


#: The fields of ``resources``, in wire order.
RESOURCE_FIELDS: Final = ("device", "batch_size", "cpu_time_ms", "gpu_utilization_ratio", "gpu_memory_bytes")
_RESOURCE_KEYS: Final = frozenset(RESOURCE_FIELDS)
_INT64_MAX: Final = 2**63 - 1
_MAX_DEVICE_CHARS: Final = 128


def _check_resources(r: Resources, limits: Limits) -> None:
    # written for the SDK's hot path (a record with a mapping is checked on the caller's thread)
    device = r.device
    if device is not None and not (
        isinstance(device, str) and 0 < len(device) <= _MAX_DEVICE_CHARS and "\x00" not in device and storable(device)
    ):
        raise WireError(f'resources.device must be 1 to {_MAX_DEVICE_CHARS} characters of text, e.g. "cpu"', field="resources")
    size = r.batch_size
    if size is not None and not (isinstance(size, int) and not isinstance(size, bool) and 1 <= size <= limits.max_batch_size):
        raise WireError(f"resources.batch_size must be an integer from 1 to {limits.max_batch_size}", field="resources")
    cpu = r.cpu_time_ms
    if cpu is not None and not (isinstance(cpu, (int, float)) and not isinstance(cpu, bool) and 0 <= cpu < math.inf):
        raise WireError("resources.cpu_time_ms must be a finite number >= 0", field="resources")
    util = r.gpu_utilization_ratio
    if util is not None and not (isinstance(util, (int, float)) and not isinstance(util, bool) and 0 <= util <= 1):
        raise WireError("resources.gpu_utilization_ratio must be a number from 0 to 1", field="resources")
    memory = r.gpu_memory_bytes
    if memory is not None and not (isinstance(memory, int) and not isinstance(memory, bool) and 0 <= memory <= _INT64_MAX):
        raise WireError("resources.gpu_memory_bytes must be an integer >= 0 (bytes)", field="resources")


def parse_resources(value: Any, limits: Limits = DEFAULT_LIMITS) -> Resources | None:
    """A record's ``resources`` object (None stays None); raises :class:`WireError`."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise WireError('resources must be an object, e.g. {"device": "cpu", "batch_size": 8}', field="resources")
    unknown = value.keys() - _RESOURCE_KEYS
    if unknown:
        name = sorted(map(str, unknown))[0]
        raise WireError(f"unknown field resources.{name[:64]} (allowed: {', '.join(RESOURCE_FIELDS)})", field="resources")
    resources = Resources(**value)
    if limits is not DEFAULT_LIMITS:
        _check_resources(resources, limits)
    return resources


@dataclass(slots=True)
class Prediction:
    """One validated prediction. Arrays are numpy, little-endian, ready to pack."""

    prediction_id: str
    model: str
    model_version: str
    ts: datetime
    #: True when the record had no timestamp and the server used ``now``.
    ts_defaulted: bool
    status: int
    latency_ms: float | None = None
    request_id: str | None = None
    input_hash: str | None = None
    cohort: dict[str, str | int | float | bool] | None = None
    trace_id: str | None = None
    span_id: str | None = None
    predicted_class: int | None = None
    confidence: float | None = None
    probabilities: np.ndarray | None = None
    boxes: np.ndarray | None = None
    box_classes: np.ndarray | None = None
    box_scores: np.ndarray | None = None
    embedding: np.ndarray | None = None
    resources: Resources | None = None


@dataclass(slots=True)
class GroundTruth:
    """One validated ground-truth revision.

    ``annotator``: who labelled it (None: not said); several annotators' labels of one
    prediction are all kept. ``audit``: the label is a reviewed reference, which scores the
    annotators and, under the ``majority`` and ``exclude`` label policies, decides the label.
    """

    prediction_id: str
    model: str
    labelled_at: datetime
    label: int | None = None
    boxes: np.ndarray | None = None
    box_classes: np.ndarray | None = None
    iscrowd: np.ndarray | None = None
    annotator: str | None = None
    audit: bool = False


# --------------------------------------------------------------------------------------------
# arrays


def encode_array(values: Any, dtype: str = "float32") -> dict[str, str]:
    """Encode an array as ``{"base64": ..., "dtype": ...}`` (little-endian, C order)."""
    if dtype not in ARRAY_DTYPES:
        raise WireError(f"unsupported dtype {dtype!r}; use one of {sorted(ARRAY_DTYPES)}")
    arr = np.ascontiguousarray(values, dtype=ARRAY_DTYPES[dtype])
    return {"base64": base64.b64encode(arr.tobytes()).decode("ascii"), "dtype": dtype}


def decode_array(
    value: Any,
    *,
    field: str,
    max_len: int,
    default_dtype: str = "float32",
    kind: Literal["float", "int"] = "float",
) -> np.ndarray:
    """Decode a JSON list or a base64 object into a 1-D numpy array.

    Floats come back as their declared precision (float16 stays float16), lists of numbers as
    ``default_dtype``. Non-finite values are refused. The length is checked against ``max_len``
    before anything is allocated.
    """
    if isinstance(value, dict):
        return _decode_base64(value, field=field, max_len=max_len, kind=kind)
    if not isinstance(value, list):
        raise WireError(f"{field} must be a list of numbers or {{'base64', 'dtype'}}", field=field)
    if len(value) > max_len:
        raise LimitExceeded(f"{field} has {len(value)} values; the limit is {max_len}", field=field)
    try:
        # No dtype: numbers come out as a numeric dtype, anything else (numeric strings, null,
        # integers beyond 64 bits, ragged nesting) as text, object or an error — never converted.
        arr = np.array(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise WireError(f"{field} must be a flat list of numbers", field=field) from None
    if arr.ndim != 1:
        raise WireError(f"{field} must be a flat list of numbers", field=field)
    if arr.dtype.kind not in "iuf":
        raise WireError(f"{field} must contain only numbers", field=field)
    if kind == "int":
        if not all_finite(arr):
            raise WireError(f"{field} contains NaN or infinity", field=field)
        if arr.size and (arr.min() < _INT_MIN or arr.max() > _INT_MAX):
            raise WireError(f"{field} has a value outside the 32-bit integer range", field=field)
        as_int = arr.astype(np.int64)
        if not np.array_equal(as_int, arr):
            raise WireError(f"{field} must contain integers", field=field)
        return as_int
    with np.errstate(over="ignore"):  # 1e39 is finite as float64, infinite as float32: refused below
        out = arr.astype(ARRAY_DTYPES[default_dtype])
    if not all_finite(out):
        raise WireError(f"{field} contains NaN or infinity (or a value too large for {default_dtype})", field=field)
    return out


def all_finite(arr: np.ndarray) -> bool:
    """Whether every value is finite.

    ``isfinite().all()`` rather than a float64 sum: the sum raises numpy RuntimeWarnings on
    hostile input (``inf + -inf``, float64 overflow) and, measured on numpy 2.4 for 10 to 1000
    float16/float32 values, is no faster.
    """
    return bool(np.isfinite(arr).all())


def _decode_base64(value: dict[str, Any], *, field: str, max_len: int, kind: str) -> np.ndarray:
    extra = set(value) - {"base64", "dtype"}
    if extra or "base64" not in value:
        raise WireError(f"{field} as an object needs exactly 'base64' and 'dtype'", field=field)
    dtype_name = value.get("dtype", "float32")
    allowed = _FLOAT_DTYPES if kind == "float" else _INT_DTYPES
    if not isinstance(dtype_name, str) or dtype_name not in allowed:
        raise WireError(f"{field}.dtype must be one of {sorted(allowed)}, not {dtype_name!r}", field=field)
    text = value["base64"]
    if not isinstance(text, str):
        raise WireError(f"{field}.base64 must be a string", field=field)
    dtype = ARRAY_DTYPES[dtype_name]
    # 4 base64 characters carry 3 bytes: refuse oversize input before decoding it.
    if (len(text) // 4) * 3 > (max_len + 1) * dtype.itemsize + 3:
        raise LimitExceeded(f"{field} is larger than {max_len} values", field=field)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise WireError(f"{field}.base64 is not valid base64", field=field) from None
    if len(raw) % dtype.itemsize:
        raise WireError(f"{field}: {len(raw)} bytes is not a whole number of {dtype_name}", field=field)
    arr = np.frombuffer(raw, dtype=dtype)
    if arr.size > max_len:
        raise LimitExceeded(f"{field} has {arr.size} values; the limit is {max_len}", field=field)
    if kind == "float" and not all_finite(arr):
        raise WireError(f"{field} contains NaN or infinity", field=field)
    return arr


# --------------------------------------------------------------------------------------------
# scalars


def parse_timestamp(value: Any, *, field: str = "timestamp") -> datetime:
    """RFC 3339 text with an offset (``Z`` allowed), or Unix seconds as a number; returns UTC."""
    if isinstance(value, bool):
        raise WireError(f"{field} must be an RFC 3339 string or Unix seconds", field=field)
    if isinstance(value, (int, float)):
        try:
            if not math.isfinite(value):
                raise WireError(f"{field} must be finite", field=field)
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise WireError(f"{field} {str(value)[:40]} is out of range", field=field) from None
    if not isinstance(value, str) or len(value) > 64:
        raise WireError(f"{field} must be an RFC 3339 string or Unix seconds", field=field)
    try:
        ts = datetime.fromisoformat(value)
    except ValueError:
        raise WireError(f"{field} {value!r} is not RFC 3339 (e.g. 2026-11-25T10:00:00Z)", field=field) from None
    if ts.tzinfo is None:
        raise WireError(f"{field} {value!r} has no UTC offset; add 'Z' or '+00:00'", field=field)
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        raise WireError(f"{field} {value!r} is out of range", field=field) from None


def format_timestamp(seconds: float) -> str:
    """Unix seconds to RFC 3339 UTC with microseconds."""
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def _string(record: Mapping[str, Any], key: str, max_chars: int, *, required: bool = False) -> str | None:
    value = record.get(key)
    if value is None:
        if required:
            raise WireError(f"{key} is required", field=key)
        return None
    if not isinstance(value, str):
        raise WireError(f"{key} must be a string", field=key)
    if not value and required:
        raise WireError(f"{key} must not be empty", field=key)
    if len(value) > max_chars:
        raise LimitExceeded(f"{key} is {len(value)} characters; the limit is {max_chars}", field=key)
    problem = text_problem(value)
    if problem is not None:
        raise WireError(f"{key} {problem}", field=key)
    return value


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None when it can.

    PostgreSQL refuses NUL in ``text`` and in JSONB, and neither PostgreSQL nor SQLite takes a lone
    surrogate (Python's json accepts ``"\\ud800"``, which is not encodable as UTF-8): either would
    fail the whole statement, so every string bound for the database is checked here first. Every
    other code point (controls, noncharacters, private use) is valid UTF-8 and is stored as sent.
    """
    if "\x00" in text:
        return "contains a NUL character (U+0000), which the database cannot store"
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"contains a lone surrogate (U+{ord(text[exc.start]):04X} at {exc.start}), which is not valid Unicode"
    return None


def storable(text: str) -> bool:
    """Whether ``text`` can be stored (see :func:`text_problem`)."""
    return text_problem(text) is None


def claimed_model(record: Any) -> str | None:
    """The model a record names, when it is a name that could be registered at all: what the
    server looks up (and authorises) before parsing the batch record by record. A record naming
    anything else is rejected by :func:`parse_prediction` with its index, never looked up."""
    if not isinstance(record, dict):
        return None
    name = record.get("model")
    if not isinstance(name, str) or not 0 < len(name) <= MAX_MODEL_CHARS or text_problem(name) is not None:
        return None
    return name


def _number(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WireError(f"{key} must be a number", field=key)
    try:
        number = float(value)
    except OverflowError:  # an integer beyond float64
        raise WireError(f"{key} must be finite", field=key) from None
    if not math.isfinite(number):
        raise WireError(f"{key} must be finite", field=key)
    return number


def _cohort(value: Any, limits: Limits) -> dict[str, str | int | float | bool] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise WireError("cohort must be an object of name -> value, e.g. {\"camera\": \"cam-3\"}", field="cohort")
    if len(value) > limits.max_cohort_keys:
        raise LimitExceeded(f"cohort has {len(value)} keys; the limit is {limits.max_cohort_keys}", field="cohort")
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > 64:
            raise WireError(f"cohort key {str(key)[:70]!r} must be 1 to 64 characters", field="cohort")
        problem = text_problem(key)
        if problem is not None:
            raise WireError(f"cohort key {key[:70]!r} {problem}", field="cohort")
        if isinstance(item, str):
            if len(item) > limits.max_string_chars:
                raise LimitExceeded(
                    f"cohort[{key!r}] is {len(item)} characters; the limit is {limits.max_string_chars}", field="cohort"
                )
            problem = text_problem(item)
            if problem is not None:
                raise WireError(f"cohort[{key!r}] {problem}", field="cohort")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise WireError(f"cohort[{key!r}] must be finite", field="cohort")
        elif isinstance(item, int) and not isinstance(item, bool):
            if not -_COHORT_INT <= item < _COHORT_INT:
                raise WireError(f"cohort[{key!r}] is an integer outside the 64-bit range", field="cohort")
        elif not isinstance(item, bool):
            raise WireError(f"cohort[{key!r}] must be a string, number or boolean", field="cohort")
    return value


def _class_id(value: Any, spec: ModelSpec, key: str) -> int:
    """A class given by name (as registered) or by index."""
    if isinstance(value, str):
        idx = spec.class_index.get(value)
        if idx is None:
            raise WireError(
                f"{key} {value[:80]!r} is not a class of model {spec.name!r}; "
                f"register it with PUT /v1/models/{spec.name}",
                field=key,
            )
        return idx
    if isinstance(value, int) and not isinstance(value, bool):
        if not 0 <= value < len(spec.classes):
            raise WireError(f"{key} index {value} is outside 0..{len(spec.classes) - 1}", field=key)
        return value
    raise WireError(f"{key} must be a class name or index", field=key)


def _class_ids(value: Any, spec: ModelSpec, key: str, limits: Limits) -> np.ndarray:
    if isinstance(value, list) and value and isinstance(value[0], str):
        if len(value) > limits.max_boxes:
            raise LimitExceeded(f"{key} has {len(value)} values; the limit is {limits.max_boxes}", field=key)
        return np.array([_class_id(v, spec, key) for v in value], dtype=np.int32)
    arr = decode_array(value, field=key, max_len=limits.max_boxes, kind="int")
    if arr.size and (arr.min() < 0 or arr.max() >= len(spec.classes)):
        raise WireError(f"{key} has a class index outside 0..{len(spec.classes) - 1}", field=key)
    return arr.astype(np.int32)


def _boxes(value: Any, key: str, limits: Limits) -> np.ndarray:
    if isinstance(value, list) and value and isinstance(value[0], list):
        if len(value) > limits.max_boxes:
            raise LimitExceeded(f"{key} has {len(value)} boxes; the limit is {limits.max_boxes}", field=key)
        if any(not isinstance(b, list) or len(b) != 4 for b in value):
            raise WireError(f"{key} must be a list of [x1, y1, x2, y2]", field=key)
        flat: Any = [c for b in value for c in b]
    else:
        flat = value
    arr = decode_array(flat, field=key, max_len=4 * limits.max_boxes).astype(np.float32, copy=False)
    if arr.size % 4:
        raise WireError(f"{key} must hold 4 numbers per box (x1, y1, x2, y2)", field=key)
    boxes = arr.reshape(-1, 4)
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        i = int(bad[0])
        raise WireError(f"{key}[{i}] = {boxes[i].tolist()} has x2 < x1 or y2 < y1", field=key)
    return boxes


# --------------------------------------------------------------------------------------------
# records

_PREDICTION_FIELDS: Final = frozenset(
    {
        "prediction_id", "model", "model_version", "timestamp", "latency_ms", "status", "request_id",
        "input_hash", "cohort", "embedding", "probabilities", "predicted_class", "confidence",
        "boxes", "box_classes", "box_scores", "trace_id", "span_id", "resources",
    }
)  # fmt: skip
_GROUND_TRUTH_FIELDS: Final = frozenset(
    {"prediction_id", "model", "timestamp", "label", "boxes", "box_classes", "iscrowd", "annotator", "audit"}
)

ModelLookup = Callable[[str], ModelSpec | None]


def _check_fields(record: Any, allowed: frozenset[str], kind: str) -> None:
    if not isinstance(record, dict):
        raise WireError(f"a {kind} record must be a JSON object")
    unknown = record.keys() - allowed
    if unknown:
        name = sorted(unknown)[0]
        raise WireError(f"unknown field {name[:64]!r} (allowed: {', '.join(sorted(allowed))})", field=name)


def _model(record: Mapping[str, Any], lookup: ModelLookup, limits: Limits) -> ModelSpec:
    name = _string(record, "model", MAX_MODEL_CHARS, required=True)
    assert name is not None
    spec = lookup(name)
    if spec is None:
        raise WireError(f"unknown model {name!r}; register it with PUT /v1/models/{name}", field="model")
    return spec


def parse_prediction(
    record: Any, lookup: ModelLookup, *, now: datetime, limits: Limits = DEFAULT_LIMITS
) -> Prediction:
    """Validate one prediction record; raises :class:`WireError` with a reason a person can act on."""
    _check_fields(record, _PREDICTION_FIELDS, "prediction")
    pid = _string(record, "prediction_id", limits.max_id_chars, required=True)
    spec = _model(record, lookup, limits)
    version = _string(record, "model_version", limits.max_version_chars, required=True)
    raw_ts = record.get("timestamp")
    ts = now if raw_ts is None else parse_timestamp(raw_ts)
    if ts > now + limits.max_future:
        raise WireError(f"timestamp {ts.isoformat()} is in the future; check the client clock", field="timestamp")
    if ts < _EPOCH_MIN:
        raise WireError(f"timestamp {ts.isoformat()} is before 2000; seconds, not milliseconds?", field="timestamp")
    status_text = record.get("status", "ok")
    status = _STATUS.get(status_text) if isinstance(status_text, str) else None
    if status is None:
        raise WireError("status must be 'ok' or 'error'", field="status")
    latency = _number(record, "latency_ms")
    if latency is not None and latency < 0:
        raise WireError("latency_ms must not be negative", field="latency_ms")
    pred = Prediction(
        prediction_id=pid,  # type: ignore[arg-type]
        model=spec.name,
        model_version=version,  # type: ignore[arg-type]
        ts=ts,
        ts_defaulted=raw_ts is None,
        status=status,
        latency_ms=latency,
        request_id=_string(record, "request_id", limits.max_string_chars),
        input_hash=_string(record, "input_hash", limits.max_string_chars),
        cohort=_cohort(record.get("cohort"), limits),
        resources=parse_resources(record.get("resources"), limits),
    )
    trace_id = record.get("trace_id")
    if trace_id is not None:
        if not isinstance(trace_id, str) or not _TRACE_ID.fullmatch(trace_id):
            raise WireError("trace_id must be 32 lowercase hex characters (W3C trace context)", field="trace_id")
        pred.trace_id = trace_id
    span_id = record.get("span_id")
    if span_id is not None:
        if not isinstance(span_id, str) or not _SPAN_ID.fullmatch(span_id):
            raise WireError("span_id must be 16 lowercase hex characters (W3C trace context)", field="span_id")
        pred.span_id = span_id
    embedding = record.get("embedding")
    if embedding is not None:
        pred.embedding = decode_array(embedding, field="embedding", max_len=limits.max_embedding_dim)
        if pred.embedding.size == 0:
            raise WireError("embedding must not be empty", field="embedding")
    if spec.task == "classification":
        _classification_outputs(record, spec, pred, limits)
    else:
        _detection_outputs(record, spec, pred, limits)
    return pred


def _classification_outputs(record: Mapping[str, Any], spec: ModelSpec, pred: Prediction, limits: Limits) -> None:
    for key in ("boxes", "box_classes", "box_scores"):
        if key in record:
            raise WireError(f"{key} is for detection models; {spec.name!r} is a classifier", field=key)
    probs = record.get("probabilities")
    if probs is not None:
        p = decode_array(probs, field="probabilities", max_len=min(limits.max_classes, len(spec.classes)))
        if p.size != len(spec.classes):
            raise WireError(
                f"probabilities has {p.size} values; model {spec.name!r} has {len(spec.classes)} classes",
                field="probabilities",
            )
        p32 = p.astype(np.float32, copy=False)
        top = int(p32.argmax())
        if p32[top] > 1 or p32.min() < 0:
            raise WireError("probabilities must lie in [0, 1] (softmax outputs, not logits)", field="probabilities")
        total = float(np.add.reduce(p32, dtype=np.float64))
        if abs(total - 1.0) > 0.01:
            raise WireError(f"probabilities sum to {total:.4f}, not 1 (send softmax outputs)", field="probabilities")
        pred.probabilities = p32
        pred.predicted_class = top
        pred.confidence = float(p32[top])
        if "predicted_class" in record and _class_id(record["predicted_class"], spec, "predicted_class") != top:
            raise WireError("predicted_class disagrees with the argmax of probabilities", field="predicted_class")
        return
    if "predicted_class" in record:
        pred.predicted_class = _class_id(record["predicted_class"], spec, "predicted_class")
        conf = _number(record, "confidence")
        if conf is not None and not 0 <= conf <= 1:
            raise WireError("confidence must lie in [0, 1]", field="confidence")
        pred.confidence = conf
        return
    if pred.status == STATUS_OK:
        raise WireError("a classification record needs probabilities or predicted_class", field="probabilities")


def _detection_outputs(record: Mapping[str, Any], spec: ModelSpec, pred: Prediction, limits: Limits) -> None:
    for key in ("probabilities", "predicted_class", "confidence"):
        if key in record:
            raise WireError(f"{key} is for classification models; {spec.name!r} is a detector", field=key)
    present = [k for k in ("boxes", "box_classes", "box_scores") if record.get(k) is not None]
    if not present:
        if pred.status == STATUS_OK:
            raise WireError("a detection record needs boxes, box_classes and box_scores (may be empty)", field="boxes")
        return
    if len(present) != 3:
        missing = sorted({"boxes", "box_classes", "box_scores"} - set(present))
        raise WireError(f"{', '.join(missing)} missing: boxes, box_classes and box_scores go together", field=missing[0])
    boxes = _boxes(record["boxes"], "boxes", limits)
    classes = _class_ids(record["box_classes"], spec, "box_classes", limits)
    scores = decode_array(record["box_scores"], field="box_scores", max_len=limits.max_boxes).astype(np.float32)
    if not len(boxes) == len(classes) == len(scores):
        raise WireError(
            f"boxes ({len(boxes)}), box_classes ({len(classes)}) and box_scores ({len(scores)}) differ in length",
            field="boxes",
        )
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise WireError("box_scores must lie in [0, 1]", field="box_scores")
    pred.boxes, pred.box_classes, pred.box_scores = boxes, classes, scores


def parse_ground_truth(
    record: Any, lookup: ModelLookup, *, now: datetime, limits: Limits = DEFAULT_LIMITS
) -> GroundTruth:
    """Validate one ground-truth record (a revision: the newest ``timestamp`` wins)."""
    _check_fields(record, _GROUND_TRUTH_FIELDS, "ground-truth")
    pid = _string(record, "prediction_id", limits.max_id_chars, required=True)
    spec = _model(record, lookup, limits)
    raw_ts = record.get("timestamp")
    labelled_at = now if raw_ts is None else parse_timestamp(raw_ts)
    if labelled_at > now + limits.max_future:
        raise WireError("timestamp is in the future; check the client clock", field="timestamp")
    gt = GroundTruth(prediction_id=pid, model=spec.name, labelled_at=labelled_at)  # type: ignore[arg-type]
    gt.annotator = _string(record, "annotator", limits.max_id_chars)
    audit = record.get("audit", False)
    if not isinstance(audit, bool):
        raise WireError("audit must be true or false", field="audit")
    gt.audit = audit
    if spec.task == "classification":
        for key in ("boxes", "box_classes", "iscrowd"):
            if key in record:
                raise WireError(f"{key} is for detection models; {spec.name!r} is a classifier", field=key)
        if record.get("label") is None:
            raise WireError("label is required for a classification model", field="label")
        gt.label = _class_id(record["label"], spec, "label")
        return gt
    if "label" in record:
        raise WireError(f"label is for classification models; {spec.name!r} is a detector", field="label")
    if record.get("boxes") is None or record.get("box_classes") is None:
        raise WireError("boxes and box_classes are required for a detection model (may be empty)", field="boxes")
    gt.boxes = _boxes(record["boxes"], "boxes", limits)
    gt.box_classes = _class_ids(record["box_classes"], spec, "box_classes", limits)
    if len(gt.boxes) != len(gt.box_classes):
        raise WireError(
            f"boxes ({len(gt.boxes)}) and box_classes ({len(gt.box_classes)}) differ in length", field="boxes"
        )
    if record.get("iscrowd") is not None:
        raw = record["iscrowd"]
        if isinstance(raw, list) and all(isinstance(v, bool) for v in raw):
            raw = [int(v) for v in raw]
        crowd = decode_array(raw, field="iscrowd", max_len=limits.max_boxes, kind="int")
        if crowd.size != len(gt.boxes) or (crowd.size and not np.isin(crowd, (0, 1)).all()):
            raise WireError("iscrowd must hold one 0/1 per box", field="iscrowd")
        gt.iscrowd = crowd.astype(np.uint8)
    return gt
