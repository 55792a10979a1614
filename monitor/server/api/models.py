"""The model registry: PUT/GET /v1/models/{model}, GET /v1/models."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status
from fastapi.concurrency import run_in_threadpool

from monitor.errors import RegistryConflict
from monitor.server.api.body import JsonContent
from monitor.server.api.deps import AdminAuth, ReadAuth, StateDep
from monitor.server.api.params import ModelName
from monitor.server.api.schemas import Counts, ModelList, ModelOut, ModelRegistration, VersionOut, problems
from monitor.server.services.models import ModelInfo, model_info, model_names, register_model
from monitor.server.store.engine import write_transaction

router = APIRouter(prefix="/v1", tags=["models"])


_AUTH = problems(401, 403, 503)


def _out(info: ModelInfo) -> ModelOut:
    return ModelOut(
        model=info.spec.name,
        task=info.spec.task,
        classes=list(info.spec.classes),
        operating_threshold=info.spec.operating_threshold,
        label_policy=info.label_policy,  # type: ignore[arg-type]
        created_at=info.created_at,
        updated_at=info.updated_at,
        counts=Counts(predictions=info.predictions, ground_truth=info.ground_truth, labelled=info.labelled),
        versions=[VersionOut(**vars(v)) for v in info.versions],
    )


@router.put(
    "/models/{model}",
    response_model=ModelOut,
    responses={**_AUTH, 201: {"model": ModelOut, "description": "Registered."}, **problems(400, 408, 409, 413, 415, 422)},
    summary="Register or update a model",
)
def put_model(
    model: ModelName, body: ModelRegistration, response: Response, state: StateDep, principal: AdminAuth, _json: JsonContent
) -> ModelOut:
    """Register a model (201) or update it (200). Classes may be appended later but never
    reordered, renamed or removed (stored predictions refer to them by position): that is a 409.
    `label_policy` (newest, majority, exclude) says which annotation the quality metrics use when
    annotators disagree; it applies to labels that arrive afterwards."""
    principal.check_model(model)
    if len(set(body.classes)) != len(body.classes):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "classes must be unique")
    try:
        with write_transaction(state.engine) as conn:
            created = register_model(
                conn, model, body.task, body.classes, body.operating_threshold, now=state.clock(),
                label_policy=body.label_policy,
            )  # fmt: skip
            info = model_info(conn, model)
    except RegistryConflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    assert info is not None
    if created:
        response.status_code = status.HTTP_201_CREATED
    return _out(info)


@router.get("/models/{model}", response_model=ModelOut, responses={**_AUTH, **problems(404, 422)}, summary="A model and its counts")
def get_model(model: ModelName, state: StateDep, principal: ReadAuth) -> ModelOut:
    """The model, its counts (`predictions`, `ground_truth` received, `labelled` = predictions that
    have ground truth) and its versions."""
    principal.check_model(model)
    with state.engine.connect() as conn:
        info = model_info(conn, model)
    if info is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}; register it with PUT /v1/models/{model}")
    return _out(info)


@router.get("/models", response_model=ModelList, responses=_AUTH, summary="Models this key can see")
async def list_models(state: StateDep, principal: ReadAuth) -> ModelList:
    """Names of the registered models the calling key may read."""

    def names() -> list[str]:
        with state.engine.connect() as conn:
            return model_names(conn)

    return ModelList(models=[m for m in await run_in_threadpool(names) if principal.allows_model(m)])
