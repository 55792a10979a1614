"""The labelling loop: queues (build, list, export for Label Studio, CVAT or COCO) and labels back
(Label Studio's webhook, imported files) as ground truth through the ingest service."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from monitor.errors import WireError
from monitor.server.api.body import read_body, read_json
from monitor.server.api.deps import AppState, IngestAuth, SamplesAuth, StateDep
from monitor.server.api.models import ModelName
from monitor.server.api.samples import query_time, runtime, spec_or_404
from monitor.server.api.schemas import IngestResponse, Rejection, problems
from monitor.server.services import label_formats, labelling, queues
from monitor.server.services.ingest import IngestResult, ingest_ground_truth
from monitor.server.services.sample_crypto import UnknownKey
from monitor.server.services.samples import Tampered
from monitor.server.store.engine import write_transaction

router = APIRouter(prefix="/v1", tags=["labelling"])

QueueName = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
_ERRORS = problems(401, 403, 404, 422, 503)


class QueueIn(BaseModel):
    """How to select the queue's items (docs/samples.md, "Selection")."""

    model_config = ConfigDict(extra="forbid")
    strategy: Literal["least_confidence", "margin", "entropy", "disagreement", "drift", "false_positive", "random"] = "least_confidence"
    size: Annotated[int, Field(ge=1, le=10_000)] = 100
    since: Annotated[str | None, Field(description="Predictions at or after (default: 7 days before `until`).")] = None
    until: Annotated[str | None, Field(description="Predictions before (default: now).")] = None
    version: Annotated[str | None, Field(max_length=64)] = None
    baseline: Annotated[str | None, Field(max_length=64, description="disagreement: the version compared with.")] = None
    cohort: Annotated[str | None, Field(description="`key:value`, e.g. camera:cam-3.")] = None
    per_class: Annotated[int | None, Field(ge=1, description="The most items of one predicted class.")] = None
    budgets: Annotated[dict[str, int], Field(description="The most items per class name (over per_class).")] = {}
    diversity: Annotated[bool, Field(description="Spread the queue over the embeddings (k-center greedy).")] = True
    pool_factor: Annotated[int, Field(ge=1, le=50)] = 4
    seed: int = 0


class QueueOut(BaseModel):
    model: str
    queue: str
    strategy: str
    params: dict[str, Any]
    built_at: datetime
    size: int
    labelled: int
    #: items still without ground truth
    pending: int
    #: how long the oldest pending item has waited
    age_seconds: float
    export_url: str


class QueueItemOut(BaseModel):
    rank: int
    prediction_id: str
    sample_id: str | None
    score: float
    labelled: bool
    exported_at: datetime | None


class QueueDetail(QueueOut):
    items: list[QueueItemOut]


class QueueList(BaseModel):
    model: str
    queues: list[QueueOut]


def _queue_out(q: queues.QueueStatus) -> dict[str, Any]:
    return {
        "model": q.model, "queue": q.queue, "strategy": q.strategy, "params": q.params, "built_at": q.built_at,
        "size": q.size, "labelled": q.labelled, "pending": q.pending, "age_seconds": q.age_seconds,
        "export_url": f"/v1/models/{q.model}/queues/{q.queue}/export?format=label-studio",
    }  # fmt: skip


@router.post("/models/{model}/queues/{queue}", response_model=QueueOut, responses=_ERRORS, summary="Build a labelling queue")
def build(model: ModelName, queue: QueueName, body: QueueIn, state: StateDep, principal: SamplesAuth) -> QueueOut:
    """Select the unlabelled samples worth labelling first and (re)build the queue with them;
    emits the `labelling.ready` automation event."""
    runtime(state)
    spec = spec_or_404(state, principal, model)
    cohort = None
    if body.cohort is not None:
        key, sep, value = body.cohort.partition(":")
        if not sep or not key:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cohort must be key:value, e.g. camera:cam-3")
        cohort = (key, value)
    spec_q = queues.QueueSpec(
        strategy=body.strategy, size=body.size, since=query_time(body.since, "since"), until=query_time(body.until, "until"),
        version=body.version, baseline=body.baseline, cohort=cohort, per_class=body.per_class, budgets=body.budgets,
        diversity=body.diversity, pool_factor=body.pool_factor, seed=body.seed,
    )  # fmt: skip
    try:
        with write_transaction(state.engine) as conn:
            status_ = queues.build_queue(conn, state.settings.automation, spec, queue, spec_q, now=state.clock())
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    return QueueOut(**_queue_out(status_))


@router.get("/models/{model}/queues", response_model=QueueList, responses=_ERRORS, summary="A model's labelling queues")
def list_queues(model: ModelName, state: StateDep, principal: SamplesAuth) -> QueueList:
    """Every queue with its size, labelled and pending items and age."""
    spec = spec_or_404(state, principal, model)
    with state.engine.connect() as conn:
        found = queues.queue_statuses(conn, spec.name, now=state.clock())
    return QueueList(model=model, queues=[QueueOut(**_queue_out(q)) for q in found])


@router.get("/models/{model}/queues/{queue}", response_model=QueueDetail, responses=_ERRORS, summary="A queue and its items")
def get_queue(model: ModelName, queue: QueueName, state: StateDep, principal: SamplesAuth) -> QueueDetail:
    spec = spec_or_404(state, principal, model)
    with state.engine.connect() as conn:
        found = queues.queue_status(conn, spec.name, queue, now=state.clock())
        items = queues.queue_items(conn, spec.name, queue) if found is not None else []
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no queue {queue!r} of model {model!r}")
    return QueueDetail(**_queue_out(found), items=[QueueItemOut(**vars(i)) for i in items])


@router.delete("/models/{model}/queues/{queue}", status_code=204, responses=_ERRORS, summary="Delete a queue")
def delete_queue(model: ModelName, queue: QueueName, state: StateDep, principal: SamplesAuth) -> Response:
    spec = spec_or_404(state, principal, model)
    with write_transaction(state.engine) as conn:
        gone = queues.delete_queue(conn, spec.name, queue)
    if not gone:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no queue {queue!r} of model {model!r}")
    return Response(status_code=204)


@router.get(
    "/models/{model}/queues/{queue}/export",
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {"application/json": {}, "application/zip": {}}, "description": "The export."}},
    summary="Export a queue for a labelling tool (logged)",
)
def export(
    model: ModelName,
    queue: QueueName,
    state: StateDep,
    principal: SamplesAuth,
    format: Annotated[Literal["label-studio", "cvat", "coco"], Query(description="label-studio (JSON tasks), cvat or coco (zip).")] = "label-studio",
    include_labelled: Annotated[bool, Query(description="Also the items labelled since the queue was built.")] = False,
) -> Response:
    """The queue's pending samples with their images and the model's predictions as
    pre-annotations: Label Studio tasks (JSON, images inline), CVAT for images 1.1 or COCO (zip of
    the annotations and images). Every exported sample is written to the access log first."""
    rt = runtime(state)
    spec = spec_or_404(state, principal, model)
    try:
        with write_transaction(state.engine) as conn:
            out = labelling.export_queue(conn, rt, spec, queue, format, principal=principal.label, now=state.clock(),
                                         pending_only=not include_labelled)  # fmt: skip
    except UnknownKey as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{exc}; add it back to samples.keys") from None
    except Tampered as exc:
        raise HTTPException(status.HTTP_500_INTERNAL_SERVER_ERROR, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if out is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no queue {queue!r} of model {model!r}")
    headers = {"Content-Disposition": f'attachment; filename="{out.filename}"', "Cache-Control": "no-store",
               "X-Cvmon-Items": str(out.items)}  # fmt: skip
    return Response(out.body, media_type=out.media_type, headers=headers)


@router.get(
    "/models/{model}/label-studio/config",
    response_class=Response,
    responses={**_ERRORS, 200: {"content": {"application/xml": {}}, "description": "The labelling config."}},
    summary="The Label Studio labelling config of a model",
)
def label_studio_config(model: ModelName, state: StateDep, principal: SamplesAuth) -> Response:
    """The labelling interface (XML) matching the exported tasks: paste it into the project's
    Labeling Interface, or pass it as `label_config` when creating the project."""
    return Response(label_formats.label_studio_config(spec_or_404(state, principal, model)), media_type="application/xml")


# --------------------------------------------------------------------------------------------
# labels back


class LabelImportResponse(IngestResponse):
    #: entries of the tool's payload that did not become a record (not a cvmon task, no label, ...)
    skipped: list[Rejection]


def _store(state: AppState, records: list[dict[str, Any]], skipped: list[tuple[int, str]], response: Response) -> LabelImportResponse:
    result = (
        ingest_ground_truth(state.engine, records, now=state.clock(), slos=state.settings.slos) if records else IngestResult()
    )
    state.service_metrics.count_ingest("ground_truth", result.accepted, result.duplicates, len(result.rejected))
    if result.accepted == 0 and result.duplicates == 0 and (skipped or result.rejected):
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    return LabelImportResponse(
        accepted=result.accepted, duplicates=result.duplicates,
        rejected=[Rejection(index=i, error=e) for i, e in result.rejected],
        skipped=[Rejection(index=i, error=e) for i, e in skipped],
    )  # fmt: skip


@router.post(
    "/models/{model}/labels/label-studio",
    response_model=LabelImportResponse,
    responses={**problems(400, 401, 403, 404, 413, 415, 503), 422: {"description": "No label was stored."}},
    summary="Label Studio's webhook",
)
async def label_studio_webhook(model: ModelName, request: Request, response: Response, state: StateDep, principal: IngestAuth) -> LabelImportResponse:
    """Point a Label Studio webhook here (`ANNOTATION_CREATED`, `ANNOTATION_UPDATED`; header
    `Authorization: Bearer <key with ingest>`). The annotation becomes ground truth of the task's
    prediction, with the annotator (`label-studio:<email or id>`) and its `updated_at` as the
    revision time: a retried or older delivery changes nothing, the newest revision wins. Other
    actions are acknowledged and ignored."""
    spec = spec_or_404(state, principal, model)
    payload = await read_json(request, state.settings.max_body_bytes)
    try:
        found = label_formats.label_studio_webhook(payload)
    except WireError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    if found is None:
        return LabelImportResponse(accepted=0, duplicates=0, rejected=[], skipped=[])

    def work() -> LabelImportResponse:
        with state.engine.connect() as conn:
            records, skipped = labelling.label_studio_labels(conn, spec, [found[1]], now=state.clock())
        return _store(state, records, skipped, response)

    return await run_in_threadpool(work)


@router.post(
    "/models/{model}/labels/import",
    response_model=LabelImportResponse,
    responses={**problems(400, 401, 403, 404, 413, 415, 503), 422: {"description": "No label was stored, or the file is unreadable."}},
    summary="Import labels from a labelling tool's file",
)
async def import_labels(
    model: ModelName,
    request: Request,
    response: Response,
    state: StateDep,
    principal: IngestAuth,
    format: Annotated[Literal["label-studio", "cvat", "coco"], Query(description="The file's format.")],
    annotator: Annotated[str, Query(min_length=1, max_length=128, description="Who labelled (CVAT and COCO files do not say).")] = "import",
) -> LabelImportResponse:
    """The body is the tool's export: a Label Studio JSON export (tasks with annotations), CVAT for
    images 1.1 (`annotations.xml` or its zip) or COCO (`annotations.json` or its zip). Images are
    matched to samples by the ids cvmon's export put in them; labels go in as ground truth."""
    spec = spec_or_404(state, principal, model)
    data = bytes(await read_body(request, state.settings.max_body_bytes))

    def work() -> LabelImportResponse:
        try:
            with state.engine.connect() as conn:
                records, skipped = labelling.file_labels(conn, spec, format, data, annotator=annotator, now=state.clock())
        except WireError as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
        if len(records) > label_formats.MAX_IMPORT_RECORDS:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"{len(records)} labels in one file; the limit is "
                                f"{label_formats.MAX_IMPORT_RECORDS}, split it")  # fmt: skip
        return _store(state, records, skipped, response)

    return await run_in_threadpool(work)
