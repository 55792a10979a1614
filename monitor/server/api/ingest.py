"""POST /v1/predictions and POST /v1/ground-truth."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.concurrency import run_in_threadpool

from monitor.errors import LimitExceeded, WireError
from monitor.server.api.body import read_json
from monitor.server.api.deps import AppState, IngestAuth, Principal, StateDep
from monitor.server.api.schemas import GroundTruthBatch, IngestResponse, PredictionBatch, Problem, problems
from monitor.server.services.ingest import (
    IngestResult,
    batch_records,
    ingest_ground_truth,
    ingest_predictions,
    record_models,
)

router = APIRouter(prefix="/v1", tags=["ingest"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Some or all records were stored (or were duplicates); `rejected` lists the others."},
    **problems(400, 401, 403, 408, 413, 415, 503),
    422: {
        "model": IngestResponse | Problem,
        "description": "No record was accepted: every one was rejected (`rejected`), or the body is not "
        '`{"records": [...]}` (`detail`).',
    },
}


def _body_schema(model: type) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
        }
    }


async def _records(request: Request, state: AppState, principal: Principal) -> list[Any]:
    payload = await read_json(request, state.settings.max_body_bytes)
    try:
        records = batch_records(payload)
    except LimitExceeded as exc:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, str(exc)) from None
    except WireError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    for model in sorted(record_models(records)):
        principal.check_model(model)
    return records


def _answer(result: IngestResult, response: Response) -> IngestResponse:
    if result.accepted == 0 and result.duplicates == 0:
        response.status_code = status.HTTP_422_UNPROCESSABLE_CONTENT
    return IngestResponse(
        accepted=result.accepted,
        duplicates=result.duplicates,
        rejected=[{"index": i, "error": e} for i, e in result.rejected],  # type: ignore[misc]
    )


@router.post(
    "/predictions",
    response_model=IngestResponse,
    responses=_RESPONSES,
    openapi_extra=_body_schema(PredictionBatch),
    summary="Store a batch of predictions",
)
async def post_predictions(request: Request, response: Response, state: StateDep, principal: IngestAuth) -> IngestResponse:
    """Store predictions. Idempotent by `(model, prediction_id)`: a retried record counts as a
    duplicate. A malformed record is rejected with its index and reason while the good records of
    the batch are stored. Accepts `Content-Encoding: gzip`."""
    records = await _records(request, state, principal)
    result = await run_in_threadpool(
        ingest_predictions,
        state.engine,
        records,
        now=state.clock(),
        partitions=state.partitions,
        policy=state.cohort_policy,
        slos=state.settings.slos,
        oldest=state.settings.retention.cutoff("predictions", state.clock()),
    )
    state.service_metrics.count_ingest("prediction", result.accepted, result.duplicates, len(result.rejected))
    return _answer(result, response)


@router.post(
    "/ground-truth",
    response_model=IngestResponse,
    responses=_RESPONSES,
    openapi_extra=_body_schema(GroundTruthBatch),
    summary="Store a batch of ground-truth labels",
)
async def post_ground_truth(request: Request, response: Response, state: StateDep, principal: IngestAuth) -> IngestResponse:
    """Store ground truth for predictions, by `prediction_id`. It may arrive before its prediction
    (it waits and is joined when the prediction arrives), again later (the newest `timestamp` wins;
    an identical or older revision is a duplicate) or weeks late; it is never dropped."""
    records = await _records(request, state, principal)
    result = await run_in_threadpool(ingest_ground_truth, state.engine, records, now=state.clock(), slos=state.settings.slos)
    state.service_metrics.count_ingest("ground_truth", result.accepted, result.duplicates, len(result.rejected))
    return _answer(result, response)


# The batch schemas are referenced by the ingest endpoints' request bodies (see _body_schema).
SCHEMAS = (PredictionBatch, GroundTruthBatch)
