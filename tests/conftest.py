"""Shared fixtures: real databases (PostgreSQL and SQLite) and real HTTP servers on loopback.

PostgreSQL comes from ``CVMON_TEST_DATABASE_URL`` (default
postgresql://postgres@127.0.0.1:5432/postgres). The suite creates a scratch database next to it,
migrates it with the real Alembic migrations and drops it at the end. When PostgreSQL is
unreachable the suite says so loudly and runs the SQLite half — except under ``CI=true``, where
that is a failure.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from testkit.servers import ThreadServer

DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/postgres"
IN_CI = os.environ.get("CI", "").lower() == "true"


# --------------------------------------------------------------------------------------------
# databases


def _pg_admin_url() -> str:
    return os.environ.get("CVMON_TEST_DATABASE_URL", DEFAULT_PG)


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1) if url.startswith("postgresql://") else url


def _pg_reachable(url: str) -> str | None:
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return str(exc).strip().splitlines()[0]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """A migrated scratch PostgreSQL database for the session (its URL), or None when unreachable."""
    import psycopg
    from sqlalchemy.engine import make_url

    admin = _pg_admin_url()
    problem = _pg_reachable(admin)
    if problem is not None:
        message = f"PostgreSQL at {admin} is unreachable ({problem})"
        if IN_CI:
            pytest.fail(message + ": under CI=true the PostgreSQL half of the suite must run", pytrace=False)
        banner = "!" * 100
        sys.stderr.write(f"\n{banner}\n{message}.\nONLY THE SQLITE HALF OF THE SUITE RUNS. Start PostgreSQL and rerun.\n{banner}\n")
        warnings.warn(message, pytest.PytestWarning, stacklevel=1)
        yield None
        return
    name = f"cvmon_test_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(_sa_url(admin)).set(database=name).render_as_string(hide_password=False)
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine

    engine = make_engine(url)
    migrate.upgrade(engine)
    engine.dispose()
    try:
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file migrated once per session by the real migrations; each test gets a copy."""
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine

    path = tmp_path_factory.mktemp("sqlite-template") / "cvmon.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate.upgrade(engine)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file
    engine.dispose()
    return path


@dataclass
class Database:
    kind: str  # "postgresql" | "sqlite"
    url: str
    engine: Any

    @property
    def is_pg(self) -> bool:
        return self.kind == "postgresql"


#: `make test-fast` runs the PostgreSQL half (the production engine, with COPY, partitions and row
#: locks); the SQLite half joins it in `make test`.
@pytest.fixture(params=["postgresql", pytest.param("sqlite", marks=pytest.mark.slow)])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """Each test using it runs twice: on the session's PostgreSQL database and on a fresh SQLite file
    (a copy of the session's migrated template)."""
    from monitor.server.store.engine import make_engine

    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
        if url is None:
            pytest.skip("PostgreSQL unreachable (allowed outside CI only; see the banner)")
    else:
        shutil.copy(request.getfixturevalue("sqlite_template"), tmp_path / "cvmon.db")
        url = f"sqlite:///{tmp_path / 'cvmon.db'}"
    engine = make_engine(url)
    try:
        yield Database(request.param, url, engine)
    finally:
        engine.dispose()


@pytest.fixture
def tx(db: Database) -> Iterator[Any]:
    """A connection in a transaction that is rolled back after the test: for tests of services,
    which take a connection and never commit (faster than a fresh model, and leaves nothing)."""
    with db.engine.connect() as conn:
        outer = conn.begin()
        try:
            yield conn
        finally:
            outer.rollback()


@pytest.fixture
def pg_engine(pg_database: str | None) -> Iterator[Any]:
    """An engine on the session's PostgreSQL database, for tests about PostgreSQL-only features."""
    from monitor.server.store.engine import make_engine

    if pg_database is None:
        pytest.skip("PostgreSQL unreachable (allowed outside CI only; see the banner)")
    engine = make_engine(pg_database)
    yield engine
    engine.dispose()


@pytest.fixture
def model_name() -> str:
    """A model name no other test uses, so tests sharing the PostgreSQL database stay apart."""
    return f"m-{uuid.uuid4().hex[:12]}"


# --------------------------------------------------------------------------------------------
# HTTP servers on loopback



@dataclass
class Api:
    """A running server plus an admin key, and helpers to call it."""

    url: str
    admin_key: str
    db: Database
    settings: Any

    def client(self, key: str | None = None, **kwargs: Any) -> Any:
        import httpx

        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)

    def admin(self) -> Any:
        return self.client(self.admin_key)

    def create_key(self, scopes: list[str], models: list[str] | None = None) -> str:
        from datetime import UTC, datetime

        from monitor.server.services.keys import create_key
        from monitor.server.store.engine import write_transaction

        with write_transaction(self.db.engine) as conn:
            _, text = create_key(conn, scopes=scopes, models=models, name="test", now=datetime.now(UTC))
        return text


@pytest.fixture
def make_api(db: Database) -> Iterator[Any]:
    """Start servers for the ``db`` under test: ``make_api(**settings_overrides) -> Api``."""
    from monitor.server.app import api_timeouts, create_app
    from monitor.server.settings import Settings
    from monitor.server.store.engine import make_engine

    stack: list[tuple[ThreadServer, Any]] = []

    def start(clock: Any = None, **overrides: Any) -> Api:
        settings = Settings(database_url=db.url, **{"scheduler": False, **overrides})
        # the server's own engine (with the timeouts `cvmon serve` gives its requests), disposed
        # here even if a slow shutdown skips the app's lifespan end
        engine = make_engine(settings.sqlalchemy_url, timeouts=api_timeouts(settings))
        app = create_app(settings, engine=engine, **({} if clock is None else {"clock": clock}))
        server = ThreadServer(app).__enter__()
        stack.append((server, engine))
        api = Api(server.url, "", db, settings)
        api.admin_key = api.create_key(["ingest", "read", "admin"])
        return api

    yield start
    for server, engine in reversed(stack):
        server.__exit__()
        engine.dispose()


@pytest.fixture
def api(make_api: Any) -> Api:
    return make_api()  # type: ignore[no-any-return]
