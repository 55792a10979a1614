"""GET /metrics: Prometheus exposition of model quality, SLO counters and the service itself."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from monitor.server.api.deps import ReadAuth, StateDep
from monitor.server.api.schemas import problems
from monitor.server.exporters.collectors import StoredMetricsCollector
from monitor.server.exporters.rollouts import RolloutCollector
from monitor.server.exporters.samples import SampleCollector
from monitor.server.exporters.slo import SloCollector

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format."}, **problems(401, 403, 503)},
    summary="Prometheus metrics",
)
async def metrics(state: StateDep, principal: ReadAuth) -> Response:
    """Every exported series (names in monitor/server/names.py). Needs a `read` key
    (Prometheus: `authorization: {credentials: <key>}`); a key bound to models sees only those.
    Values are read from the database: a scrape never computes a metric."""
    stored = CollectorRegistry()
    stored.register(StoredMetricsCollector(state.engine, principal.allows_model))
    stored.register(RolloutCollector(state.engine, state.clock, principal.allows_model))
    stored.register(SampleCollector(state.engine, state.clock, principal.allows_model))
    if state.settings.slos:
        stored.register(SloCollector(state.engine, state.settings.slos, state.clock, principal.allows_model))

    def render() -> bytes:
        with state.engine.connect() as conn:
            quality = state.quality_exposition.text(conn, principal.allows_model)
        return generate_latest(state.service_metrics.scrape_registry()) + generate_latest(stored) + quality.encode()

    return Response(await run_in_threadpool(render), media_type=CONTENT_TYPE_LATEST)
