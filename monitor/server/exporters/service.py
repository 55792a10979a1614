"""The service's own metrics: ingest outcomes and HTTP request durations, per process.

With ``cvmon serve --workers N`` each worker is a process; ``serve`` then points
PROMETHEUS_MULTIPROC_DIR at a fresh directory so prometheus_client keeps these values in shared
files and any worker's /metrics reports the sum. Model metrics do not live here: they are read
from the database (:mod:`.collectors`).
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Receive, Scope, Send

from monitor.server.names import METRIC

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ServiceMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ingest = METRIC["cvmon_ingest_records_total"]
        http = METRIC["cvmon_http_request_duration_seconds"]
        # prometheus_client adds the _total suffix of counters itself
        self.ingest_records = Counter(ingest.name.removesuffix("_total"), ingest.help, list(ingest.labels), registry=registry)
        self.http_duration = Histogram(
            http.name, http.help, list(http.labels), registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )  # fmt: skip

    def count_ingest(self, kind: str, accepted: int, duplicates: int, rejected: int) -> None:
        for outcome, n in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
            if n:
                self.ingest_records.labels(kind, outcome).inc(n)

    def scrape_registry(self) -> CollectorRegistry:
        """This process's metrics, or every worker's when running multiprocess."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return registry
        return self.registry


class TimingMiddleware:
    """Records every request's duration under its route template (bounded labels)."""

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = [500]

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.http_duration.labels(scope["method"], path, str(status[0])).observe(time.perf_counter() - start)
