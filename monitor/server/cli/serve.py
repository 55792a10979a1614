"""``cvmon serve``: the API (and, in a later step, the scheduler) in one process."""

from __future__ import annotations

import click

from monitor.server.cli._common import load_settings, open_engine

#: How ``cvmon serve`` passes --log-level to the app in each worker process.
LOG_LEVEL_ENV = "CVMON_LOG_LEVEL"


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (0.0.0.0 for all).")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="API worker processes. Use 1 on the embedded SQLite database.")  # fmt: skip
@click.option("--log-level", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"]))
def serve(host: str, port: int, workers: int, log_level: str) -> None:
    """Serve the HTTP API (OpenAPI docs at /docs), and the scheduled jobs unless CVMON_SCHEDULER=0.

    --log-level applies to cvmon's own logs too: each job run of each tick is logged at debug.

    Refuses to start on a database that is not at the latest migration (run `cvmon db upgrade`).
    Authentication is on unless CVMON_AUTH_DISABLED=1.

    Slow clients and large bodies are bounded by settings (docs/operations.md):
    CVMON_HTTP_HEADER_TIMEOUT_SECONDS (10), CVMON_HTTP_BODY_TIMEOUT_SECONDS (30),
    CVMON_HTTP_KEEPALIVE_SECONDS (5), CVMON_HTTP_MAX_CONNECTIONS per worker (1000),
    CVMON_MAX_BODY_BYTES (32 MiB) and CVMON_MAX_BODY_BYTES_IN_FLIGHT per worker (64 MiB).
    """
    import uvicorn

    settings = load_settings()
    open_engine(settings)  # fail here, with the fix, rather than inside a worker
    if settings.is_sqlite and workers > 1:
        click.echo("warning: several workers on SQLite serialise on its write lock; use PostgreSQL to scale out", err=True)
    if workers > 1:
        # the service's own counters (ingest, HTTP) are summed over workers through shared files
        import os
        import tempfile

        from monitor.server.exporters.service import MULTIPROC_ENV

        os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="cvmon-prometheus-")
    import functools
    import os

    from monitor.server.connections import HeaderTimeoutProtocol

    # the level of cvmon's own loggers in every worker (per-tick job lines are DEBUG)
    os.environ[LOG_LEVEL_ENV] = log_level.upper()
    uvicorn.run(
        "monitor.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        access_log=log_level == "debug",
        timeout_graceful_shutdown=10,
        # slow clients (docs/operations.md): headers in time, idle keep-alives closed, a cap on
        # connections per worker (503 past it); body pauses are bounded by the app
        # uvicorn only calls what it is given here, as it would a class; a partial pickles to workers
        http=functools.partial(HeaderTimeoutProtocol, header_timeout=settings.http_header_timeout_seconds),  # type: ignore[arg-type]
        timeout_keep_alive=settings.http_keepalive_seconds,
        limit_concurrency=settings.http_max_connections,
    )


commands = [serve]
