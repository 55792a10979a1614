"""The client-side deadline of the API's PostgreSQL connections (monitor/server/store/deadline.py)
covers waiting on the server, not the caller's own work between two statements of one connection:
a comparison that bootstraps over the rows it read for longer than the deadline must not have its
connection shut under it (a canary compare of detection models did, on a loaded CI machine).
A frozen server is tests/faults/test_database_timeouts.py."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from monitor.server.store.engine import DatabaseTimeouts, make_engine

#: the deadline is this plus the watchdog's grace (1 s)
STATEMENT_SECONDS = 0.2


@pytest.fixture
def guarded(pg_database):
    if pg_database is None:
        pytest.skip("PostgreSQL unreachable (allowed outside CI only; see the banner)")
    engine = make_engine(pg_database, timeouts=DatabaseTimeouts(statement_seconds=STATEMENT_SECONDS, connect_seconds=2))
    yield engine
    engine.dispose()


def test_work_between_statements_longer_than_the_deadline_keeps_the_connection(guarded):
    with guarded.connect() as conn:
        pid = conn.execute(sa.text("select pg_backend_pid()")).scalar_one()
        time.sleep(STATEMENT_SECONDS + 1.5)  # the caller computing, past the deadline
        assert conn.execute(sa.text("select pg_backend_pid()")).scalar_one() == pid
        conn.commit()
        time.sleep(STATEMENT_SECONDS + 1.5)  # and after a commit, before the next statement
        assert conn.execute(sa.text("select 1")).scalar_one() == 1


def test_a_statement_the_server_cancels_is_still_cancelled_first(guarded):
    with guarded.connect() as conn, pytest.raises(sa.exc.OperationalError, match="statement timeout"):
        conn.execute(sa.text("select pg_sleep(5)"))
