"""Sample images: POST /v1/samples (ingest), and the sample browser's JSON under
/v1/models/{model}/samples (the ``samples`` scope; every image served is logged first)."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from monitor.errors import LimitExceeded, WireError
from monitor.server.api.body import read_json
from monitor.server.api.deps import AdminAuth, AppState, IngestAuth, Principal, SamplesAuth, StateDep
from monitor.server.api.models import ModelName
from monitor.server.api.schemas import Rejection, SampleBatch, problems
from monitor.server.services import sample_overlay, sample_views
from monitor.server.services.ingest import batch_records, record_models
from monitor.server.services.models import model_spec
from monitor.server.services.sample_audit import Accessed, access_log, record_access
from monitor.server.services.sample_crypto import UnknownKey
from monitor.server.services.samples import (
    ObjectMissing,
    SampleRuntime,
    StoredObject,
    Tampered,
    ingest_samples,
    read_bytes,
    stored_object,
)
from monitor.server.store.engine import write_transaction
from monitor.wire import ModelSpec, parse_timestamp

log = logging.getLogger("cvmon.api")
router = APIRouter(prefix="/v1", tags=["samples"])
#: The hand-validated request body, published for /docs (app.py adds it to the schema).
SCHEMAS = (SampleBatch,)

SampleId = Annotated[str, Path(pattern=r"^[0-9a-f]{24}$", description="The sample's id (24 hex digits).")]
_ERRORS = problems(401, 403, 404, 422, 503)
#: Sample bytes are personal data: never cached, never sniffed, never run.
IMAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'",
    "Referrer-Policy": "no-referrer",
}


def runtime(state: AppState) -> SampleRuntime:
    if state.samples is None:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            "samples are not enabled on this server: opt models in with samples.models in cvmon.yaml (docs/samples.md)",
        )
    return state.samples


class SampleIngestResponse(BaseModel):
    accepted: int
    duplicates: int
    #: not stored because of the model's privacy policy (a face or a plate under `drop`)
    dropped: int
    rejected: list[Rejection]


@router.post(
    "/samples",
    response_model=SampleIngestResponse,
    openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SampleBatch"}}}}},
    responses={**problems(400, 401, 403, 413, 415, 503), 422: {"description": "No sample was accepted, or samples are off."}},
    summary="Store sample images",
)
async def post_samples(request: Request, response: Response, state: StateDep, principal: IngestAuth) -> SampleIngestResponse:
    """Store the input images of predictions (`{"records": [{"prediction_id", "model", "timestamp",
    "image": {"base64", "media_type"}, "reason", "source_size"}]}`; the SDK sends them). Faces and
    licence plates are masked or the image dropped per the model's policy before anything is
    stored; the bytes are encrypted at rest. One sample per prediction: a retry is a duplicate."""
    rt = runtime(state)
    payload = await read_json(request, state.settings.max_body_bytes)
    try:
        records = batch_records(payload)
    except LimitExceeded as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    except WireError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    for model in sorted(record_models(records)):
        principal.check_model(model)
    result = await run_in_threadpool(ingest_samples, state.engine, rt, records, now=state.clock())
    dropped = sum(result.dropped.values())
    if result.accepted == 0 and result.duplicates == 0 and dropped == 0:
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    return SampleIngestResponse(
        accepted=result.accepted, duplicates=result.duplicates, dropped=dropped,
        rejected=[Rejection(index=i, error=e) for i, e in result.rejected],
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# the browser


class SampleOut(BaseModel):
    sample_id: str
    prediction_id: str
    captured_at: datetime
    received_at: datetime
    #: why the SDK kept it: error, low_confidence, rate, reservoir, manual
    reason: str
    media_type: str
    width: int
    height: int
    #: the image the model saw, when the SDK shrank it (boxes are in its pixels)
    source_width: int
    source_height: int
    size_bytes: int
    sha256: str
    faces: int
    plates: int
    masking: str
    #: stored unmasked (a keep policy): each view is a PII exposure
    exposed: bool
    #: the encryption key the bytes are sealed with
    key_id: str
    version: str | None
    predicted_at: datetime | None
    status: str | None
    cohort: dict[str, Any] | None
    trace_id: str | None
    span_id: str | None
    request_id: str | None
    input_hash: str | None
    latency_ms: float | None
    predicted_class: str | None
    confidence: float | None
    probabilities: dict[str, float] | None
    boxes: list[list[float]] | None
    box_classes: list[str] | None
    box_scores: list[float] | None
    label: str | None
    gt_boxes: list[list[float]] | None
    gt_classes: list[str] | None
    labelled_at: datetime | None
    queue_rank: int | None
    queue_score: float | None
    #: the image (every request logged); add ?overlay=boxes to draw predictions and ground truth
    image_url: str
    overlay_url: str
    neighbours_url: str


class SampleList(BaseModel):
    model: str
    samples: list[SampleOut]
    #: pass as `cursor` for the next page; null on the last page
    next_cursor: str | None


def _out(model: str, view: sample_views.SampleView) -> SampleOut:
    base = f"/v1/models/{model}/samples/{view.sample_id}"
    fields = {k: getattr(view, k) for k in SampleOut.model_fields if hasattr(view, k)}
    return SampleOut(**fields, image_url=f"{base}/image", overlay_url=f"{base}/overlay", neighbours_url=f"{base}/neighbours")


def spec_or_404(state: AppState, principal: Principal, model: str) -> ModelSpec:
    principal.check_model(model)
    with state.engine.connect() as conn:
        spec = model_spec(conn, model)
    if spec is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
    return spec


def _class(spec: ModelSpec, name: str, what: str) -> int:
    if name in spec.class_index:
        return spec.class_index[name]
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{what} {name[:128]!r} is not a class of {spec.name!r}")


def query_time(value: str | None, what: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value, field=what)
    except WireError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def _cursor(text: str | None) -> tuple[datetime, str] | None:
    if text is None:
        return None
    at, _, sid = text.rpartition("~")
    parsed = query_time(at, "cursor") if at else None
    if parsed is None or len(sid) != 24:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor is not one this endpoint returned")
    return parsed, sid


@router.get("/models/{model}/samples", response_model=SampleList, responses=_ERRORS, summary="Browse a model's samples")
def list_samples(
    model: ModelName,
    state: StateDep,
    principal: SamplesAuth,
    cell: Annotated[str | None, Query(description="A confusion cell, `true,predicted` class names (classification).")] = None,
    cls: Annotated[str | None, Query(alias="class", description="The true or predicted class (detection: any box).")] = None,
    camera: Annotated[str | None, Query(description="Shorthand for cohort=camera:VALUE.")] = None,
    cohort: Annotated[str | None, Query(description="`key:value`, e.g. camera:cam-3.")] = None,
    version: Annotated[str | None, Query(max_length=64)] = None,
    since: Annotated[str | None, Query(description="Captured at or after (RFC 3339 or Unix seconds).")] = None,
    until: Annotated[str | None, Query(description="Captured before.")] = None,
    confidence_below: Annotated[float | None, Query(ge=0, le=1)] = None,
    queue: Annotated[str | None, Query(max_length=64, description="Only the items of this labelling queue.")] = None,
    labelled: Annotated[bool | None, Query(description="Only labelled (true) or unlabelled (false) samples.")] = None,
    limit: Annotated[int, Query(ge=1, le=sample_views.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=80)] = None,
) -> SampleList:
    """Samples newest first, with their prediction (probabilities or boxes, trace id) and ground
    truth: the images behind a confusion cell, a class, a camera, a time range, low confidence
    or a labelling queue. Metadata only: images are served (and logged) by `.../image`."""
    runtime(state)
    spec = spec_or_404(state, principal, model)
    parsed_cell = None
    if cell is not None:
        true, sep, predicted = cell.partition(",")
        if not sep:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cell must be `true,predicted` class names")
        parsed_cell = (_class(spec, true, "cell"), _class(spec, predicted, "cell"))
    slice_ = ("camera", camera) if camera is not None else None
    if cohort is not None:
        key, sep, value = cohort.partition(":")
        if not sep or not key:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cohort must be key:value, e.g. camera:cam-3")
        slice_ = (key, value)
    flt = sample_views.SampleFilter(
        cell=parsed_cell, class_index=_class(spec, cls, "class") if cls is not None else None, cohort=slice_,
        version=version, since=query_time(since, "since"), until=query_time(until, "until"), confidence_below=confidence_below,
        queue=queue, labelled=labelled, limit=limit, after=_cursor(cursor),
    )  # fmt: skip
    try:
        with state.engine.connect() as conn:
            views = sample_views.browse(conn, spec, flt)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    nxt = f"{views[-1].captured_at.isoformat()}~{views[-1].sample_id}" if len(views) == limit else None
    return SampleList(model=model, samples=[_out(model, v) for v in views], next_cursor=nxt)


def _view(state: AppState, spec: ModelSpec, sample_id: str) -> sample_views.SampleView:
    with state.engine.connect() as conn:
        view = sample_views.get(conn, spec, sample_id)
    if view is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sample {sample_id} of model {spec.name!r}")
    return view


@router.get("/models/{model}/samples/{sample_id}", response_model=SampleOut, responses=_ERRORS, summary="One sample")
def get_sample(model: ModelName, sample_id: SampleId, state: StateDep, principal: SamplesAuth) -> SampleOut:
    """A sample's metadata, prediction and ground truth (not its image)."""
    runtime(state)
    return _out(model, _view(state, spec_or_404(state, principal, model), sample_id))


@router.get(
    "/models/{model}/samples/{sample_id}/image",
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {"image/jpeg": {}, "image/png": {}, "image/webp": {}}, "description": "The image."}},
    summary="A sample's image (logged)",
)
def get_sample_image(
    model: ModelName,
    sample_id: SampleId,
    state: StateDep,
    principal: SamplesAuth,
    overlay: Annotated[Literal["none", "boxes"], Query(description="`boxes`: predictions (orange) and ground truth (green) drawn in, as PNG.")] = "none",
    threshold: Annotated[float | None, Query(ge=0, le=1, description="With overlay=boxes: leave out predicted boxes scored below.")] = None,
) -> Response:
    """The image as stored (masked per the model's policy), decrypted. The view is written to the
    access log (who, which sample, when) before the bytes are sent; a view of a sample stored
    unmasked counts as a PII exposure (`cvmon_pii_exposure_events_total`)."""
    rt = runtime(state)
    spec = spec_or_404(state, principal, model)
    view = _view(state, spec, sample_id)
    with write_transaction(state.engine) as conn:
        obj = stored_object(conn, model, sample_id)
        if obj is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sample {sample_id} of model {model!r}")
        record_access(conn, model, [Accessed(sample_id, view.exposed)], principal=principal.label, action="view",
                      detail=f"image overlay={overlay}", now=state.clock())  # fmt: skip
    data = read_stored(rt, obj)
    if overlay == "boxes":
        return Response(sample_overlay.draw(data, view, threshold=threshold), media_type="image/png", headers=IMAGE_HEADERS)
    return Response(data, media_type=obj.media_type, headers=IMAGE_HEADERS)


def read_stored(rt: SampleRuntime, obj: StoredObject) -> bytes:
    """The plaintext, or a clear answer when the store or the key ring cannot give it."""
    try:
        return read_bytes(rt, obj)
    except ObjectMissing:
        raise HTTPException(status.HTTP_410_GONE, f"sample {obj.sample_id}: its image is no longer stored (retention)") from None
    except UnknownKey as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{exc}; add it back to samples.keys") from None
    except Tampered as exc:
        log.error("%s", exc)
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None


class OverlayBox(BaseModel):
    kind: Literal["prediction", "ground_truth"]
    cls: str
    score: float | None
    #: x1, y1, x2, y2 in the sample's pixels
    box: list[float]


class OverlayOut(BaseModel):
    width: int
    height: int
    caption: str
    boxes: list[OverlayBox]


@router.get("/models/{model}/samples/{sample_id}/overlay", response_model=OverlayOut, responses=_ERRORS, summary="Boxes to draw")
def get_overlay(model: ModelName, sample_id: SampleId, state: StateDep, principal: SamplesAuth) -> OverlayOut:
    """Prediction and ground-truth boxes in the sample's pixels (scaled when the SDK shrank the
    image), and a caption: what a page draws as SVG over the image."""
    runtime(state)
    data = sample_overlay.overlay_json(_view(state, spec_or_404(state, principal, model), sample_id))
    return OverlayOut(width=data["width"], height=data["height"], caption=data["caption"],
                      boxes=[OverlayBox(kind=b["kind"], cls=b["class"], score=b["score"], box=b["box"]) for b in data["boxes"]])  # fmt: skip


class NeighbourOut(BaseModel):
    sample_id: str
    prediction_id: str
    distance: float
    predicted_class: str | None
    label: str | None
    captured_at: datetime
    image_url: str


class NeighboursOut(BaseModel):
    #: "drift reference" (the span the version's drift reference was fitted on) or "labelled samples"
    reference: str
    reference_start: datetime | None
    reference_end: datetime | None
    #: reference samples compared
    compared: int
    nearest: list[NeighbourOut]


@router.get(
    "/models/{model}/samples/{sample_id}/neighbours", response_model=NeighboursOut, responses=_ERRORS,
    summary="The nearest reference samples by embedding",
)  # fmt: skip
def get_neighbours(
    model: ModelName, sample_id: SampleId, state: StateDep, principal: SamplesAuth, k: Annotated[int, Query(ge=1, le=50)] = 5
) -> NeighboursOut:
    """The `k` samples nearest to this one in embedding space (Euclidean) among the reference: the
    samples captured in the span of the version's drift reference, else the labelled samples.
    404 when the sample's prediction carries no embedding."""
    runtime(state)
    spec = spec_or_404(state, principal, model)
    with state.engine.connect() as conn:
        found = sample_views.nearest_reference(conn, spec, sample_id, k=k)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no sample {sample_id} of {model!r} with an embedding")
    return NeighboursOut(
        reference=found.reference, reference_start=found.reference_start, reference_end=found.reference_end,
        compared=found.compared,
        nearest=[NeighbourOut(**asdict(n), image_url=f"/v1/models/{model}/samples/{n.sample_id}/image") for n in found.nearest],
    )  # fmt: skip


class AccessOut(BaseModel):
    at: datetime
    sample_id: str
    #: the API key id (or auth-disabled, or a console user)
    principal: str
    action: Literal["view", "export"]
    exposed: bool
    detail: str


class AccessLog(BaseModel):
    model: str
    access: list[AccessOut]


@router.get("/models/{model}/sample-access", response_model=AccessLog, responses=_ERRORS, summary="Who viewed or exported samples")
def get_access_log(
    model: ModelName,
    state: StateDep,
    principal: AdminAuth,
    since: str | None = None,
    sample_id: Annotated[str | None, Query(pattern=r"^[0-9a-f]{24}$")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> AccessLog:
    """The access log of a model's samples, newest first: every view and export, who, when."""
    principal.check_model(model)
    with state.engine.connect() as conn:
        rows = access_log(conn, model, since=query_time(since, "since"), sample_id=sample_id, limit=limit)
    return AccessLog(model=model, access=[AccessOut(**asdict(r)) for r in rows])
