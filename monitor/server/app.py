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
from monitor.server.api import compare, health, ingest, labelling, models, prometheus, query, reference, samples
from monitor.server.api import reports as report_api
from monitor.server.api.deps import AppState, utc_now
from monitor.server.exporters.service import TimingMiddleware
from monitor.server.settings import Settings
from monitor.server.store.engine import make_engine
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


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> FastAPI:
    """Build the app. Startup refuses a database that is not at the latest migration."""
    owns_engine = engine is None
    engine = engine or make_engine(settings.sqlalchemy_url)
    state = AppState(settings=settings, engine=engine, partitions=PartitionManager(engine), clock=clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        verify_schema(engine)
        state.partitions.ensure_ahead(clock(), settings.partition_days_ahead)
        scheduler = None
        if settings.scheduler:
            from monitor.server.jobs.scheduler import start_scheduler

            scheduler = start_scheduler(engine, settings, clock)
        if settings.auth_disabled:
            log.warning("API-key authentication is DISABLED (CVMON_AUTH_DISABLED=1): anyone who can reach this port can read and write")
        try:
            yield
        finally:
            if scheduler is not None:
                scheduler.shutdown(wait=True)
            if owns_engine:
                engine.dispose()

    app = FastAPI(
        title="cvmon",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.cvmon = state
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
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return create_app(Settings.load())
