"""GET /healthz (the process is up) and GET /readyz (the database answers, at the latest migration)."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool

from monitor.errors import SchemaOutOfDate
from monitor.server.api.deps import StateDep
from monitor.server.api.schemas import Health, Ready, problems
from monitor.server.store.migrate import head_revision, verify_schema

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves requests. Needs no key."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=problems(503), summary="Readiness")
async def readyz(state: StateDep) -> Ready:
    """200 when the database is reachable and at the latest migration; 503 otherwise. Needs no key."""
    try:
        await run_in_threadpool(verify_schema, state.engine)
    except SchemaOutOfDate as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc)) from None
    return Ready(status="ready", schema_revision=head_revision())
