"""GET /metrics: Prometheus exposition of model quality, SLO counters and the service itself."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.server.api.deps import Principal, ScrapeAuth, StateDep
from monitor.server.api.schemas import problems
from monitor.server.exporters.collectors import StoredMetricsCollector
from monitor.server.exporters.rollouts import RolloutCollector
from monitor.server.exporters.samples import SampleCollector
from monitor.server.exporters.slo import SloCollector

router = APIRouter(tags=["metrics"])


def sees_service_series(principal: Principal) -> bool:
    """Whether a scrape gets the service-wide series (ingest outcomes, HTTP durations). They sum
    every model's traffic, so a key bound to some models does not: its volume would tell about
    the others'."""
    return principal.key is None or principal.key.models is None


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}, **problems(401, 403, 503)},
    summary="Prometheus metrics",
)
async def metrics(state: StateDep, principal: ScrapeAuth) -> Response:
    """Every exported series (names in monitor/server/names.py). Needs a `metrics` key
    (made for Prometheus: it can read nothing else) or a `read` key; Prometheus sends it with
    `authorization: {credentials_file: ...}`. A key bound to models sees only those models'
    series, and none of the service-wide ones. Values are read from the database: a scrape never
    computes a metric."""
    stored = CollectorRegistry()
    stored.register(StoredMetricsCollector(state.engine, principal.allows_model))
    stored.register(RolloutCollector(state.engine, state.clock, principal.allows_model))
    stored.register(SampleCollector(state.engine, state.clock, principal.allows_model))
    if state.settings.slos:
        stored.register(SloCollector(state.engine, state.settings.slos, state.clock, principal.allows_model))
    service = sees_service_series(principal)

    def render() -> bytes:
        with state.engine.connect() as conn:
            quality = state.quality_exposition.text(conn, principal.allows_model)
        own = generate_latest(state.service_metrics.scrape_registry()) if service else b""
        return own + generate_latest(stored) + quality.encode()

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)
