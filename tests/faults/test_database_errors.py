"""Every way "the database is away" surfaces is a 503 with Retry-After, on every kind of path.

test_postgres_restart.py stops a real PostgreSQL under load; which exception a request meets
there depends on timing (refused connection, a backend terminated mid-COPY, a dead pooled
connection, a pool timeout). Here each of those exceptions is raised at each place it can come
from — the key check, a synchronous route, the ingest service in the thread pool, the /metrics
collector, the readiness check — so none of them can slip through as a 500 on a lucky run.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy.exc

from testkit.servers import ThreadServer
from tests.faults.servers import create_key
from tests.server.records import cls_record

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

MODEL = "db-errors"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """One server for the module (the errors are raised by the tests, so the database behind it
    does not matter): its URL and an admin key. The key cache is off: every request checks its key."""
    from monitor.server.app import create_app
    from monitor.server.settings import Settings
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine

    url = f"sqlite:///{tmp_path_factory.mktemp('db-errors') / 'cvmon.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    key = create_key(url, ["ingest", "read", "admin"])
    with ThreadServer(create_app(Settings(database_url=url, scheduler=False, key_cache_seconds=0))) as live:
        with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}) as c:
            assert (
                c.put(f"/v1/models/{MODEL}", json={"task": "classification", "classes": ["a", "b", "c"]}).status_code
                == 201
            )
        yield live.url, key


def _sa(cls: type[sqlalchemy.exc.DBAPIError], orig: Exception) -> Exception:
    return cls("SELECT 1", {}, orig)


ERRORS = [
    pytest.param(
        lambda: _sa(sqlalchemy.exc.OperationalError, psycopg.OperationalError("connection refused")),
        id="sqlalchemy-operational",
    ),
    pytest.param(
        lambda: _sa(sqlalchemy.exc.InterfaceError, psycopg.InterfaceError("the connection is closed")),
        id="sqlalchemy-interface",
    ),
    pytest.param(
        lambda: sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 5 reached"), id="pool-timeout"
    ),
    pytest.param(
        lambda: psycopg.errors.AdminShutdown("terminating connection due to administrator command"),
        id="raw-admin-shutdown-mid-copy",
    ),
    pytest.param(
        lambda: psycopg.OperationalError("consuming input failed: server closed the connection"),
        id="raw-psycopg-operational",
    ),
    pytest.param(lambda: psycopg.InterfaceError("the connection is closed"), id="raw-psycopg-interface"),
    pytest.param(lambda: sqlalchemy.exc.DisconnectionError("connection invalidated"), id="disconnection"),
]

# (what raises, the request that reaches it)
PLACES = [
    pytest.param("monitor.server.api.deps.verify_key", ("GET", "/v1/models", None), id="key-check"),
    pytest.param("monitor.server.api.models.model_info", ("GET", "/v1/models/{m}", None), id="sync-route"),
    pytest.param(
        "monitor.server.api.ingest.ingest_predictions",
        ("POST", "/v1/predictions", "records"),
        id="ingest-in-threadpool",
    ),
    pytest.param(
        "monitor.server.api.prometheus.StoredMetricsCollector.collect",
        ("GET", "/metrics", None),
        id="metrics-collector",
    ),
    pytest.param(
        "monitor.server.exporters.collectors.QualityExposition.text",
        ("GET", "/metrics", None),
        id="metrics-quality",
    ),
    pytest.param("monitor.server.api.health.verify_schema", ("GET", "/readyz", None), id="readiness"),
]


@pytest.mark.parametrize("error", ERRORS)
@pytest.mark.parametrize(("target", "request_"), PLACES)
def test_database_errors_are_503_with_retry_after(server, monkeypatch, error, target, request_):
    url, key = server

    def fail(*_: Any, **__: Any) -> Any:
        raise error()

    monkeypatch.setattr(target, fail)
    method, path, body = request_
    json = {"records": [cls_record(MODEL, "p1")]} if body else None
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
        r = c.request(method, path.format(m=MODEL), json=json)
    assert r.status_code == 503, r.text
    assert int(r.headers["retry-after"]) > 0
    assert r.json() == {"detail": "the database is unavailable; retry later"}


def test_a_programming_error_is_still_a_500(server, monkeypatch):
    """The 503 mapping is for an unreachable database only: a bug must not hide behind it."""
    url, key = server
    monkeypatch.setattr("monitor.server.api.models.model_names", lambda conn: 1 / 0)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get("/v1/models").status_code == 500


@pytest.mark.parametrize(
    "command", [["serve", "--port", "1"], ["worker"], ["jobs", "run-once"]], ids=["serve", "worker", "jobs-run-once"]
)
def test_commands_started_without_a_database_say_so_in_one_line(command):
    import os
    import subprocess
    import sys

    from testkit.servers import free_port

    url = f"postgresql://cvmon:s3cret-pw@127.0.0.1:{free_port()}/cvmon"  # nothing listens there
    done = subprocess.run(
        [sys.executable, "-m", "monitor.server.cli", *command], env={**os.environ, "CVMON_DATABASE_URL": url},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]  # the worker logs its start-up first
    assert last.startswith("Error: cannot reach the database at postgresql+psycopg://cvmon:***@127.0.0.1"), done.stderr
    assert "Traceback" not in done.stderr and "s3cret-pw" not in done.stderr
