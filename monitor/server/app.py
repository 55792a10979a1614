"""``create_app(settings)``: the FastAPI application. Nothing is built at import."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine

from monitor import __version__
from monitor.server import console
from monitor.server.api import compare, docs, health, ingest, labelling, models, prometheus, query, reference, samples
from monitor.server.api import reports as report_api
from monitor.server.api.body import BodyLimits
from monitor.server.api.deps import AppState, utc_now
from monitor.server.exporters.service import TimingMiddleware
from monitor.server.settings import Settings
from monitor.server.store.engine import DatabaseTimeouts, make_engine
from monitor.server.store.migrate import verify_schema
from monitor.server.store.partitions import PartitionManager

log = logging.getLogger("cvmon")

DESCRIPTION = """cvmon stores predictions and delayed ground truth of computer-vision models and turns
them into quality metrics, drift, SLOs and alerts.

Authenticate with `Authorization: Bearer <key>`; create keys with `cvmon keys create`.
Scopes: `ingest` (POST predictions / ground truth / samples), `read` (GET), `admin` (register models),
`samples` (view and export sample images; every access is logged).
A key bound to models can only touch those models.
"""

#: How long clients should wait before retrying while the database is unreachable.
RETRY_AFTER_SECONDS = 5


def _unavailable_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean "the database is away", answered 503 + Retry-After: SQLAlchemy's, and
    psycopg's own, which the COPY path (raw driver cursor) raises unwrapped when a backend is
    terminated mid-statement."""
    errors: list[type[Exception]] = [
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,  # pool exhausted: every connection busy or hanging
        sqlalchemy.exc.DisconnectionError,
    ]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs without the driver
        return tuple(errors)
    return (*errors, psycopg.OperationalError, psycopg.InterfaceError)


def api_timeouts(settings: Settings) -> DatabaseTimeouts:
    """The database timeouts of the API's requests (docs/operations.md)."""
    return DatabaseTimeouts(
        connect_seconds=settings.db_connect_timeout_seconds,
        statement_seconds=settings.db_statement_timeout_seconds,
        lock_seconds=settings.db_lock_timeout_seconds,
        pool_seconds=settings.db_pool_timeout_seconds,
    )


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the app. Startup refuses a database that is not at the latest migration.

    Requests use ``engine`` (by default one with :func:`api_timeouts`). Startup and the scheduled
    jobs, whose statements may rightly run long, use an engine without statement or lock timeouts
    when the app builds its own.
    """
    owns_engine = engine is None
    engine = engine or make_engine(settings.sqlalchemy_url, timeouts=api_timeouts(settings))
    state = AppState(settings=settings, engine=engine, partitions=PartitionManager(engine), clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        background = make_engine(settings.sqlalchemy_url) if owns_engine else engine
        verify_schema(background)
        PartitionManager(background).ensure_ahead(clock(), settings.partition_days_ahead)
        scheduler = None
        if settings.scheduler:
            from monitor.server.jobs.scheduler import start_scheduler

            scheduler = start_scheduler(background, settings, clock)
        elif owns_engine:
            background.dispose()  # no jobs here: its connections would only sit in the pool
        if settings.auth_disabled:
            log.warning("API-key authentication is DISABLED (CVMON_AUTH_DISABLED=1): anyone who can reach this port can read and write")
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)
            if owns_engine:
                background.dispose()
                engine.dispose()

    app = FastAPI(
        title="cvmon",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Starlette's trailing-slash redirect is absolute, built from the Host header a client
        # chooses: /v1/models/b/ is a 404 instead.
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
    )
    app.state.cvmon = state
    docs.install(app)
    app.include_router(ingest.router)
    app.include_router(models.router)
    app.include_router(query.router)
    app.include_router(reference.router)
    app.include_router(report_api.router)
    app.include_router(compare.router)
    app.include_router(samples.router)
    app.include_router(labelling.router)
    app.include_router(prometheus.router)
    app.include_router(health.router)
    console.install(app)  # the pages at /, after the API so /v1, /metrics and /docs keep their routes
    app.add_middleware(
        BodyLimits,
        budget=state.body_budget,
        max_bytes=settings.max_body_bytes,
        read_timeout=settings.http_body_timeout_seconds,
    )
    app.add_middleware(TimingMiddleware, metrics=state.service_metrics)
    for schema in (*ingest.SCHEMAS, *samples.SCHEMAS):  # referenced by the hand-validated request bodies
        _add_schema(app, schema)
    # Starlette types a handler's exception as Exception, though it is only called with the registered class
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    for error in _unavailable_errors():
        app.add_exception_handler(error, _database_unavailable)
    return app


def _add_schema(app: FastAPI, model: type) -> None:
    from pydantic.json_schema import models_json_schema

    original = app.openapi

    def openapi() -> dict:  # type: ignore[type-arg]
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        _, defs = models_json_schema([(model, "validation")], ref_template="#/components/schemas/{model}")
        schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with lone surrogates in the echoed input replaced: Python's json accepts
    ``"\\ud800"`` in a body, and echoing it back verbatim fails to encode (a 500)."""
    return JSONResponse({"detail": _encodable(jsonable_encoder(exc.errors()))}, status_code=422)


def _encodable(value: Any) -> Any:
    if isinstance(value, str):
        return value if value.isascii() else value.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    return value


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    log.error("database unavailable during %s %s: %s", request.method, request.url.path, str(exc).splitlines()[0])
    return JSONResponse(
        {"detail": "the database is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (what ``cvmon serve`` runs in each worker)."""
    import os

    level = os.environ.get("CVMON_LOG_LEVEL", "INFO")  # set by `cvmon serve --log-level`
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(Settings.load())
