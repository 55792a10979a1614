"""GET /healthz (the process is up) and GET /readyz (the database answers, at the latest migration).

Liveness never touches the database: a database outage must not make an orchestrator restart
healthy API processes. Readiness answers within :data:`READY_TIMEOUT_SECONDS` whatever the
database does, so a load balancer takes the replica out of rotation instead of waiting on it.
"""

from __future__ import annotations

from typing import Final

import anyio
import anyio.to_thread
from fastapi import APIRouter, HTTPException, status

from monitor.errors import SchemaOutOfDate
from monitor.server.api.deps import StateDep
from monitor.server.api.schemas import Health, Ready, problems
from monitor.server.store.migrate import head_revision, verify_schema

router = APIRouter(tags=["health"])

#: /readyz gives up on the database after this long (probes commonly time out at 2 s or more).
READY_TIMEOUT_SECONDS: Final = 1.5


@router.get("/healthz", response_model=Health, summary="Liveness")
async def healthz() -> Health:
    """200 while the process serves requests. Needs no key; never touches the database."""
    return Health(status="ok")


@router.get("/readyz", response_model=Ready, responses=problems(503), summary="Readiness")
async def readyz(state: StateDep) -> Ready:
    """200 when the database answers within 1.5 s and is at the latest migration; 503 otherwise.
    Needs no key."""
    with anyio.move_on_after(READY_TIMEOUT_SECONDS) as deadline:
        try:
            # abandoned on timeout: the thread returns once the engine's own deadline cuts the call
            await anyio.to_thread.run_sync(verify_schema, state.engine, abandon_on_cancel=True)
        except SchemaOutOfDate as exc:
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers=_RETRY) from None
    if deadline.cancelled_caught:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s",
            headers=_RETRY,
        )
    return Ready(status="ready", schema_revision=head_revision())


_RETRY = {"Retry-After": "5"}
