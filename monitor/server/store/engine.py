"""Engine creation for the two supported databases, and write transactions."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc

from monitor.server.store.deadline import Watchdog

#: How long SQLite waits for its write lock when no lock timeout is given (jobs, commands).
SQLITE_BUSY_SECONDS = 30.0
#: The client-side deadline of a statement runs this long past the server's statement_timeout,
#: so that a server that answers always cancels first.
WATCHDOG_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class DatabaseTimeouts:
    """Timeouts of an engine; None leaves the database's own default (no limit)."""

    connect_seconds: float | None = None
    #: PostgreSQL ``statement_timeout``, and the client-side deadline of every call (plus a grace)
    statement_seconds: float | None = None
    #: PostgreSQL ``lock_timeout``; SQLite's busy timeout (waiting for the write lock)
    lock_seconds: float | None = None
    #: waiting for a free connection of the pool
    pool_seconds: float | None = None


def make_engine(url: str, *, pool_size: int = 5, timeouts: DatabaseTimeouts | None = None, **kwargs: Any) -> Engine:
    """An engine for ``sqlite:///PATH`` (the embedded default) or ``postgresql+psycopg://``.

    SQLite runs in WAL mode with ``synchronous=FULL`` so an acknowledged write survives a crash of
    the server process. cvmon issues ``BEGIN`` itself on SQLite (pysqlite's implicit transactions
    are off) so that write transactions can take the write lock up front (``BEGIN IMMEDIATE``,
    see :func:`write_transaction`) and a read-check-then-write never races another writer.

    ``timeouts`` bound how long a call may wait on the database (the API's engine has them; the
    scheduled jobs, whose statements may run long, do not).
    """
    t = timeouts or DatabaseTimeouts()
    if url.startswith("sqlite"):
        busy = SQLITE_BUSY_SECONDS if t.lock_seconds is None else t.lock_seconds
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy}, **kwargs)
        event.listen(engine, "connect", functools.partial(_sqlite_connect, busy_ms=round(busy * 1000)))
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    connect_args: dict[str, Any] = dict(kwargs.pop("connect_args", {}))
    if t.connect_seconds is not None:
        connect_args["connect_timeout"] = max(2, math.ceil(t.connect_seconds))  # libpq's minimum is 2
    options = [f"-c {name}={round(seconds * 1000)}" for name, seconds in
               (("statement_timeout", t.statement_seconds), ("lock_timeout", t.lock_seconds)) if seconds is not None]  # fmt: skip
    if options:
        connect_args["options"] = " ".join(options)
    if t.pool_seconds is not None:
        kwargs["pool_timeout"] = t.pool_seconds
    guarded = t.statement_seconds is not None
    engine = create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=not guarded, connect_args=connect_args, **kwargs
    )
    if guarded:
        assert t.statement_seconds is not None
        _guard(engine, t.statement_seconds + WATCHDOG_GRACE_SECONDS, ping_seconds=t.connect_seconds or 3.0)
    else:
        event.listen(engine, "handle_error", _failed_ping_is_a_disconnect)
    return engine


def _guard(engine: Engine, seconds: float, *, ping_seconds: float) -> None:
    """Put the engine's connections under a :class:`Watchdog` while they wait on the server: from
    the start of a statement to its result, and during a commit or a rollback. The caller's own work between statements (a bootstrap over the rows it read) is
    not a server that does not answer, so it runs without a deadline. A statement whose rows are
    streamed (``yield_per``) stays armed until the next statement or the check-in, since its
    fetches wait on the server too. The pool's pre-ping happens before any event a watchdog could
    arm on, so the ping is done here instead, at checkout, under a deadline of its own."""
    watchdog = Watchdog(seconds)

    def on_connect(dbapi_conn: Any, record: Any) -> None:
        record.info["cvmon_fresh"] = True

    def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
        if not record.info.pop("cvmon_fresh", False):
            watchdog.arm(dbapi_conn, ping_seconds)
            try:
                engine.dialect.do_ping(dbapi_conn)
            except Exception as error:  # any failure: the connection is unusable, the pool opens another
                raise exc.DisconnectionError(f"pre-ping failed: {error}") from error
            finally:
                watchdog.disarm(dbapi_conn)

    def on_statement(conn: Connection, *args: Any) -> None:
        watchdog.arm(conn.connection.dbapi_connection)

    def on_result(conn: Connection, cursor: Any, statement: Any, parameters: Any, context: Any, executemany: Any) -> None:
        options = context.execution_options if context is not None else {}
        if not (options.get("stream_results") or options.get("yield_per")):
            watchdog.disarm(conn.connection.dbapi_connection)

    def waiting(call: Callable[[Any], None]) -> Callable[[Any], None]:
        # commits and rollbacks, the pool's rollback on return included, go through the dialect
        def guarded(conn: Any) -> None:
            raw = getattr(conn, "dbapi_connection", conn)
            watchdog.arm(raw)
            try:
                call(conn)
            finally:
                watchdog.disarm(raw)

        return guarded

    engine.dialect.do_commit = waiting(engine.dialect.do_commit)  # type: ignore[method-assign,assignment]
    engine.dialect.do_rollback = waiting(engine.dialect.do_rollback)  # type: ignore[method-assign,assignment]

    def on_release(dbapi_conn: Any, *args: Any) -> None:
        if dbapi_conn is not None:
            watchdog.disarm(dbapi_conn)

    event.listen(engine.pool, "connect", on_connect)
    event.listen(engine.pool, "checkout", on_checkout)
    for name in ("checkin", "invalidate", "soft_invalidate", "close", "close_detached"):
        event.listen(engine.pool, name, on_release)
    event.listen(engine, "before_cursor_execute", on_statement)
    event.listen(engine, "after_cursor_execute", on_result)
    event.listen(engine, "engine_disposed", lambda *_: watchdog.stop())


def _failed_ping_is_a_disconnect(context: Any) -> None:
    """A pre-ping that fails in any way means the pooled connection is unusable, so the pool
    opens a fresh one. Pinging a connection whose server went away can fail with psycopg's
    ProgrammingError ("can't change 'autocommit' now": SQLAlchemy's ping restores autocommit on
    the broken connection), which is not recognised as a disconnect: a request during a
    PostgreSQL restart got a 500 instead of a new connection or a 503
    (tests/faults/test_postgres_restart.py, one full-suite run in four)."""
    if context.is_pre_ping:
        context.is_disconnect = True


def _sqlite_connect(dbapi_conn: Any, _record: Any, *, busy_ms: int) -> None:
    dbapi_conn.isolation_level = None  # cvmon emits BEGIN itself (see _sqlite_begin)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute(f"PRAGMA busy_timeout={busy_ms:d}")
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
