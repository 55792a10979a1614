"""Pydantic schemas of the HTTP API, for /docs and response validation.

The ingest endpoints publish :class:`PredictionBatch` / :class:`GroundTruthBatch` as their request
schema but validate records with :mod:`monitor.wire` (hand-written for throughput, and so that
one bad record is rejected with its index while the others are stored).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from monitor.server.api.params import storable_text

FloatList = list[float]


class Base64Array(BaseModel):
    """Little-endian bytes of a 1-D array, base64-encoded."""

    model_config = ConfigDict(extra="forbid")
    base64: str
    dtype: Literal["float16", "float32", "float64", "int16", "int32", "int64", "uint8"] = "float32"


ArrayField = FloatList | Base64Array
ScalarCohort = str | int | float | bool


class ResourcesRecord(BaseModel):
    """What the inference call that made a prediction used (monitor.wire.Resources)."""

    model_config = ConfigDict(extra="forbid")
    device: Annotated[str | None, Field(min_length=1, max_length=128, description='"cpu" or the GPU\'s model name.')] = None
    batch_size: Annotated[int | None, Field(ge=1, le=1_000_000, description="Inputs of the call.")] = None
    cpu_time_ms: Annotated[float | None, Field(ge=0, description="CPU time of the serving process over the call.")] = None
    gpu_utilization_ratio: Annotated[float | None, Field(ge=0, le=1, description="NVML utilisation, 0 to 1.")] = None
    gpu_memory_bytes: Annotated[int | None, Field(ge=0, description="Memory used on the GPU.")] = None


class PredictionRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: Annotated[str, Field(min_length=1, max_length=128, description="Client-made id; retries reuse it.")]
    model: Annotated[str, Field(min_length=1, max_length=128)]
    model_version: Annotated[str, Field(min_length=1, max_length=64)]
    timestamp: Annotated[
        datetime | float | None, Field(description="RFC 3339 with offset, or Unix seconds; default: now.")
    ] = None
    latency_ms: Annotated[float | None, Field(ge=0)] = None
    status: Literal["ok", "error"] = "ok"
    request_id: Annotated[str | None, Field(max_length=256)] = None
    input_hash: Annotated[str | None, Field(max_length=256)] = None
    cohort: Annotated[
        dict[str, ScalarCohort] | None, Field(description="Slicing fields such as camera or site.", max_length=16)
    ] = None
    embedding: ArrayField | None = None
    probabilities: Annotated[ArrayField | None, Field(description="One per class, in the model's class order.")] = None
    predicted_class: Annotated[str | int | None, Field(description="Class name or index (without probabilities).")] = None
    confidence: Annotated[float | None, Field(ge=0, le=1)] = None
    boxes: Annotated[list[FloatList] | ArrayField | None, Field(description="[[x1, y1, x2, y2], ...] in pixels.")] = None
    box_classes: list[str] | list[int] | Base64Array | None = None
    box_scores: ArrayField | None = None
    trace_id: Annotated[str | None, Field(pattern=r"^[0-9a-f]{32}$", description="W3C trace id.")] = None
    span_id: Annotated[str | None, Field(pattern=r"^[0-9a-f]{16}$", description="W3C span id.")] = None
    resources: Annotated[
        ResourcesRecord | None, Field(description="What the inference call used, for cost per inference.")
    ] = None


class GroundTruthRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prediction_id: Annotated[str, Field(min_length=1, max_length=128)]
    model: Annotated[str, Field(min_length=1, max_length=128)]
    timestamp: Annotated[
        datetime | float | None, Field(description="When it was labelled; the newest revision wins. Default: now.")
    ] = None
    label: Annotated[str | int | None, Field(description="Class name or index (classification).")] = None
    boxes: list[FloatList] | ArrayField | None = None
    box_classes: list[str] | list[int] | Base64Array | None = None
    iscrowd: list[int] | list[bool] | Base64Array | None = None
    annotator: Annotated[
        str | None,
        Field(max_length=128, description="Who labelled it; every annotator's newest label is kept (classification)."),
    ] = None
    audit: Annotated[bool, Field(description="A reviewed reference label: it scores the annotators.")] = False


class SampleImage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base64: str
    media_type: Literal["image/jpeg", "image/png", "image/webp"] | None = None


class SampleRecord(BaseModel):
    """The input image of one prediction (monitor.wire_images)."""

    model_config = ConfigDict(extra="forbid")
    prediction_id: Annotated[str, Field(min_length=1, max_length=128)]
    model: Annotated[str, Field(min_length=1, max_length=128)]
    timestamp: Annotated[datetime | float | None, Field(description="When it was captured; default: now.")] = None
    image: SampleImage
    reason: Literal["error", "low_confidence", "rate", "reservoir", "manual"] = "manual"
    source_size: Annotated[
        list[int] | None, Field(min_length=2, max_length=2, description="[width, height] of the image the model saw, when shrunk.")
    ] = None


class SampleBatch(BaseModel):
    records: Annotated[list[SampleRecord], Field(min_length=1)]


class PredictionBatch(BaseModel):
    records: Annotated[list[PredictionRecord], Field(min_length=1)]


class GroundTruthBatch(BaseModel):
    records: Annotated[list[GroundTruthRecord], Field(min_length=1)]


class Rejection(BaseModel):
    index: int
    error: str


class IngestResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: list[Rejection]


class ModelRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")
    task: Literal["classification", "detection"]
    classes: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=128), AfterValidator(storable_text)]],
        Field(min_length=1, max_length=100_000),
    ]
    operating_threshold: Annotated[float, Field(ge=0, le=1, description="Score threshold the model acts on.")] = 0.5
    label_policy: Annotated[
        Literal["newest", "majority", "exclude"] | None,
        Field(description="Which annotation the quality metrics use when annotators disagree (docs/quality.md); "
                          "classification only. Left out: unchanged (newest for a new model)."),
    ] = None  # fmt: skip


class VersionOut(BaseModel):
    version: str
    first_seen: datetime
    last_seen: datetime
    predictions: int
    errors: int
    labelled: int


class Counts(BaseModel):
    predictions: int
    ground_truth: int
    labelled: int


class ModelOut(BaseModel):
    model: str
    task: Literal["classification", "detection"]
    classes: list[str]
    operating_threshold: float
    label_policy: Literal["newest", "majority", "exclude"]
    created_at: datetime
    updated_at: datetime
    counts: Counts
    versions: list[VersionOut]


class ModelList(BaseModel):
    models: list[str]


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready"]
    schema_revision: str


class Problem(BaseModel):
    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class ValidationProblem(BaseModel):
    """FastAPI's answer to a request that fails its declared parameters or body."""

    detail: list[ValidationIssue]


_PROBLEMS: dict[int, str] = {
    400: "The body is not valid JSON, or not whole gzip (truncated, or bytes after its last member).",
    401: "Missing, invalid or revoked API key.",
    403: "The key lacks the scope or a model of the request.",
    404: "No such model.",
    408: "The request body stopped arriving (a pause longer than the body timeout).",
    409: "The change would reinterpret stored data.",
    413: "The body (after gunzip) or the batch is over its limit.",
    415: "The body is not declared as JSON (send `Content-Type: application/json`), or an unsupported Content-Encoding (use gzip).",
    422: "The request is well-formed but refused: a sentence, or the list of invalid parameters.",
    503: "The database is unavailable, or the server holds as many request bodies as it may; retry after Retry-After seconds.",
}
_RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for error answers: ``{"detail": ...}`` bodies, Retry-After on 503.

    A 422 is either cvmon's own refusal (a sentence) or FastAPI's parameter validation (a list),
    so it is documented as both.
    """
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        model: Any = Problem | ValidationProblem if code == 422 else Problem
        out[code] = {"model": model, "description": _PROBLEMS[code]}
        if code == 503:
            out[code]["headers"] = _RETRY_AFTER
    return out
