"""Engine creation for the two supported databases, and write transactions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event


def make_engine(url: str, *, pool_size: int = 5, **kwargs: Any) -> Engine:
    """An engine for ``sqlite:///PATH`` (the embedded default) or ``postgresql+psycopg://``.

    SQLite runs in WAL mode with ``synchronous=FULL`` so an acknowledged write survives a crash of
    the server process. cvmon issues ``BEGIN`` itself on SQLite (pysqlite's implicit transactions
    are off) so that write transactions can take the write lock up front (``BEGIN IMMEDIATE``,
    see :func:`write_transaction`) and a read-check-then-write never races another writer.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_connect)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, **kwargs)
    event.listen(engine, "handle_error", _failed_ping_is_a_disconnect)
    return engine


def _failed_ping_is_a_disconnect(context: Any) -> None:
    """A pre-ping that fails in any way means the pooled connection is unusable, so the pool
    opens a fresh one. Pinging a connection whose server went away can fail with psycopg's
    ProgrammingError ("can't change 'autocommit' now": SQLAlchemy's ping restores autocommit on
    the broken connection), which is not recognised as a disconnect: a request during a
    PostgreSQL restart got a 500 instead of a new connection or a 503
    (tests/faults/test_postgres_restart.py, one full-suite run in four)."""
    if context.is_pre_ping:
        context.is_disconnect = True


def _sqlite_connect(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # cvmon emits BEGIN itself (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the write lock from its start on SQLite (no-op option elsewhere)."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            yield conn
