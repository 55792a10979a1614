"""Canary gates and automation events over HTTP.

=======================================================  =====  ==============================================
GET  /v1/models/{model}/compare?baseline=&candidate=      read   the comparison as JSON (Argo Rollouts' ``web``
                                                                 provider: ``successCondition`` on ``verdict``)
POST /v1/models/{model}/canary/flagger                    read   Flagger's webhook: the HTTP status is the
                                                                 verdict (200 pass, 202 inconclusive, 412 fail)
GET  /v1/models/{model}/automation/events                 read   automation events with their delivery log
=======================================================  =====  ==============================================

Each comparison is recorded (what ``cvmon_canary_decision`` exports; a verdict that becomes pass
or fail emits a ``canary.verdict`` event).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from monitor.server.api.deps import AppState, Principal, ReadAuth, StateDep
from monitor.server.api.models import ModelName
from monitor.server.api.schemas import problems
from monitor.server.services import automation as auto
from monitor.server.services import canary
from monitor.server.store.engine import write_transaction

router = APIRouter(prefix="/v1", tags=["canary"])

Version = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^[^\x00]+$")]
#: Flagger treats any status above 202 as a failed check.
FLAGGER_STATUS = {"pass": 200, "inconclusive": 202, "fail": 412}
#: With ``strict``: an inconclusive check counts as failed (Flagger rolls back after its threshold).
FLAGGER_STRICT_INCONCLUSIVE = 425


class MetricOut(BaseModel):
    metric: str
    gating: bool
    tolerance: float | None
    worse: str
    test: str
    baseline: float | None
    candidate: float | None
    difference: float | None
    low: float | None
    high: float | None
    samples_baseline: int
    samples_candidate: int
    labels_baseline: int
    labels_candidate: int
    #: pass | fail | inconclusive; null for a metric that does not gate
    decision: str | None


class CompareOut(BaseModel):
    model: str
    baseline: str
    candidate: str
    since: datetime
    until: datetime
    alpha: float
    #: pass | fail | inconclusive: Argo's `successCondition: result.verdict != "fail"`
    verdict: str
    #: 1 pass, 0 inconclusive, -1 fail (as `cvmon_canary_decision`)
    decision: int
    metrics: list[MetricOut]


def _out(c: canary.Comparison) -> CompareOut:
    return CompareOut(
        model=c.model, baseline=c.baseline, candidate=c.candidate, since=c.since, until=c.until, alpha=c.alpha,
        verdict=c.verdict, decision={"pass": 1, "inconclusive": 0, "fail": -1}[c.verdict],
        metrics=[MetricOut(**m.__dict__) for m in c.metrics],
    )  # fmt: skip


def _run(state: AppState, model: str, baseline: str, candidate: str, since: datetime | None) -> CompareOut:
    """Compare on a read connection, then record in a short write transaction."""
    now = state.clock()
    policy = state.settings.canary.policy(model)
    try:
        with state.engine.connect() as conn:
            result = canary.compare(conn, model, baseline, candidate, policy=policy, until=now, since=since)
    except canary.UnknownSubject as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except canary.CompareError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    with write_transaction(state.engine) as conn:
        canary.record(conn, result, now=now, automation=state.settings.automation)
    return _out(result)


def _since(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    try:
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    except OverflowError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "since is out of range") from None


@router.get(
    "/models/{model}/compare",
    response_model=CompareOut,
    responses=problems(401, 403, 404, 422, 503),
    summary="Compare a candidate version with its baseline (canary gate)",
)
async def compare(
    model: ModelName,
    state: StateDep,
    principal: ReadAuth,
    baseline: Version,
    candidate: Version,
    since: Annotated[datetime | None, Query(description="Traffic from this time (default: the candidate's first prediction).")] = None,
) -> CompareOut:
    """Per metric: both versions' values, the difference with its anytime-valid interval, the
    evidence and a decision; the verdict fails when a gating metric fails (its false-fail rate is
    the configured α however often this is polled). For Argo Rollouts' `web` provider use
    `successCondition: result.verdict != "fail"` (docs/canary.md)."""
    principal.check_model(model)
    return await run_in_threadpool(_run, state, model, baseline, candidate, _since(since))


class FlaggerPayload(BaseModel):
    """What Flagger POSTs to a webhook; `metadata` carries the comparison's parameters."""

    name: str = ""
    namespace: str = ""
    phase: str = ""
    checksum: str = ""
    metadata: dict[str, str] = Field(default_factory=dict)


@router.post(
    "/models/{model}/canary/flagger",
    response_model=CompareOut,
    responses={
        202: {"description": "inconclusive"}, 412: {"description": "fail"}, 425: {"description": "inconclusive (strict)"},
        **problems(400, 401, 403, 404, 422, 503),
    },
    summary="Flagger webhook: the HTTP status is the verdict",
)
async def flagger(
    model: ModelName,
    request: Request,
    response: Response,
    state: StateDep,
    payload: Annotated[FlaggerPayload, Body()],
) -> CompareOut:
    """Flagger's `rollout` webhook: metadata `baseline` and `candidate` (and optionally `since`,
    `strict: "true"`). Answers 200 on pass, 202 on inconclusive (Flagger proceeds; 425 with
    strict, which Flagger counts as a failed check) and 412 on fail. Flagger webhooks cannot send
    headers: the API key may come as metadata `api_key` (a `read` key bound to this model) when
    there is no `Authorization` header."""
    principal = _flagger_principal(request, state, payload.metadata)
    principal.check_model(model)
    meta = payload.metadata
    missing = [k for k in ("baseline", "candidate") if not meta.get(k)]
    if missing:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"webhook metadata needs {' and '.join(missing)}")
    since = None
    if meta.get("since"):
        try:
            since = _since(datetime.fromisoformat(meta["since"].replace("Z", "+00:00")))
        except ValueError:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "metadata since must be an RFC 3339 time") from None
    for key in ("baseline", "candidate"):
        if len(meta[key]) > 64 or "\x00" in meta[key]:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"metadata {key} must be a version name of at most 64 characters")
    out = await run_in_threadpool(_run, state, model, meta["baseline"], meta["candidate"], since)
    strict = meta.get("strict", "").lower() in ("1", "true", "yes")
    code = FLAGGER_STATUS[out.verdict]
    response.status_code = FLAGGER_STRICT_INCONCLUSIVE if strict and out.verdict == "inconclusive" else code
    return out


def _flagger_principal(request: Request, state: AppState, metadata: dict[str, str]) -> Principal:
    if state.settings.auth_disabled:
        return Principal(None)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not (scheme.lower() == "bearer" and token):
        token = metadata.get("api_key", "")
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing API key: an Authorization header or webhook metadata api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )  # fmt: skip
    key = state.keys.get(token.strip())
    if key is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"})
    if "read" not in key.scopes:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this API key lacks the 'read' scope")
    return Principal(key)


class AttemptOut(BaseModel):
    attempt: int
    started_at: datetime
    finished_at: datetime | None
    #: HTTP status the receiver answered (null: no answer)
    status: int | None
    error: str | None


class DeliveryOut(BaseModel):
    endpoint: str
    #: pending | delivered | failed
    state: str
    attempts: int
    next_attempt_at: datetime
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None
    log: list[AttemptOut]


class EventOut(BaseModel):
    id: str
    type: str
    created_at: datetime
    payload: dict[str, Any]
    deliveries: list[DeliveryOut]


class EventList(BaseModel):
    model: str
    events: list[EventOut]


@router.get(
    "/models/{model}/automation/events",
    response_model=EventList,
    responses=problems(401, 403, 422, 503),
    summary="Automation events of a model and their delivery log",
)
async def events(
    model: ModelName,
    state: StateDep,
    principal: ReadAuth,
    type: Annotated[str | None, Query(max_length=32, description="Only this event type, e.g. canary.verdict.")] = None,
    since: Annotated[datetime | None, Query(description="Only events created from this time.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventList:
    """Newest first; every delivery to every endpoint with each attempt (time, HTTP status, error)."""
    principal.check_model(model)
    after = _since(since)

    def read() -> EventList:
        with state.engine.connect() as conn:
            found = auto.list_events(conn, model, kind=type, since=after, limit=limit)
        return EventList(
            model=model,
            events=[
                EventOut(
                    id=e.event_id, type=e.kind, created_at=e.created_at, payload=dict(e.payload),
                    deliveries=[
                        DeliveryOut(**{k: v for k, v in d.__dict__.items() if k != "log"}, log=[AttemptOut(**a.__dict__) for a in d.log])
                        for d in e.deliveries
                    ],
                )
                for e in found
            ],
        )  # fmt: skip

    return await run_in_threadpool(read)
