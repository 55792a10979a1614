"""Dependencies shared by the routers: the application state and API-key authentication."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from monitor.server.api.body import BodyBudget
from monitor.server.exporters.collectors import QualityExposition
from monitor.server.exporters.service import ServiceMetrics
from monitor.server.services.ingest import CohortPolicy
from monitor.server.services.keys import ApiKey, verify_key
from monitor.server.services.samples import SampleRuntime
from monitor.server.settings import Settings
from monitor.server.store.partitions import PartitionManager

log = logging.getLogger("cvmon.api")


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppState:
    """Everything a request needs, built once by ``create_app``."""

    settings: Settings
    engine: Engine
    partitions: PartitionManager
    clock: Callable[[], datetime] = utc_now
    keys: KeyCache = field(init=False)
    cohort_policy: CohortPolicy = field(init=False)
    service_metrics: ServiceMetrics = field(init=False)
    quality_exposition: QualityExposition = field(init=False)
    body_budget: BodyBudget = field(init=False)
    #: None when no model has opted in to samples
    samples: SampleRuntime | None = field(init=False)

    def __post_init__(self) -> None:
        self.body_budget = BodyBudget(self.settings.max_body_bytes_in_flight)
        self.keys = KeyCache(self.engine, ttl_seconds=self.settings.key_cache_seconds)
        self.cohort_policy = CohortPolicy(self.settings)
        self.service_metrics = ServiceMetrics(CollectorRegistry())
        self.quality_exposition = QualityExposition(self.settings.cohort_keys)
        self.samples = SampleRuntime.from_settings(self.settings.samples)


class KeyCache:
    """Verified keys for a few seconds, so a busy ingest path does not hit the database per request.

    A revoked key stops working within ``ttl_seconds`` on every replica. Entries are keyed by the
    SHA-256 of the key text, so neither the key nor a timing of comparisons against it is kept.
    """

    def __init__(self, engine: Engine, ttl_seconds: float) -> None:
        self.engine = engine
        self.ttl = ttl_seconds
        self._entries: dict[bytes, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def get(self, text: str) -> ApiKey | None:
        now = time.monotonic()
        digest = hashlib.sha256(text.encode("utf-8", "replace")).digest()
        hit = self._entries.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        with self.engine.connect() as conn:
            key = verify_key(conn, text)
        with self._lock:
            if len(self._entries) > 10_000:  # bounded: a flood of bad keys must not grow memory
                self._entries.clear()
            self._entries[digest] = (now, key)
        return key


def get_state(request: Request) -> AppState:
    return request.app.state.cvmon  # type: ignore[no-any-return]


StateDep = Annotated[AppState, Depends(get_state)]


@dataclass(frozen=True)
class Principal:
    """Who is calling: a key's scopes and models, or everyone when auth is disabled."""

    key: ApiKey | None

    @property
    def label(self) -> str:
        return "auth-disabled" if self.key is None else f"key {self.key.key_id}"

    def allows_model(self, model: str) -> bool:
        return self.key is None or self.key.allows_model(model)

    def check_model(self, model: str) -> None:
        if not self.allows_model(model):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key is not allowed to use model {model[:128]!r}")


def require(scope: str, *alternatives: str) -> Callable[..., Principal]:
    """A dependency that authenticates the request and checks it holds ``scope`` (or one of the
    ``alternatives``)."""
    accepted = (scope, *alternatives)

    def dependency(request: Request, state: StateDep) -> Principal:
        if state.settings.auth_disabled:
            return Principal(None)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "missing API key: send 'Authorization: Bearer <key>' (create one with `cvmon keys create`)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        key = state.keys.get(token.strip())
        if key is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED, "invalid or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if key.scopes.isdisjoint(accepted):
            wanted = " or ".join(f"'{s}'" for s in accepted)
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this API key lacks the {wanted} scope")
        return Principal(key)

    return dependency


IngestAuth = Annotated[Principal, Depends(require("ingest"))]
ReadAuth = Annotated[Principal, Depends(require("read"))]
AdminAuth = Annotated[Principal, Depends(require("admin"))]
#: GET /metrics: a key made for Prometheus (``metrics``) or any ``read`` key.
ScrapeAuth = Annotated[Principal, Depends(require("metrics", "read"))]
SamplesAuth = Annotated[Principal, Depends(require("samples"))]
