"""ForkedCopy: rows computed by a forked child process and COPYed by the parent (PostgreSQL, Linux)."""

from __future__ import annotations

import os
import threading
from datetime import UTC, datetime

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.server.store.bulk import FORK_AVAILABLE, ForkedCopy, copy_rows
from monitor.server.store.engine import write_transaction

pytestmark = pytest.mark.skipif(not FORK_AVAILABLE, reason="ForkedCopy forks: Linux only")

METADATA = sa.MetaData()
TABLE = sa.Table(
    "forked_copy_probe", METADATA,
    sa.Column("who", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("n", sa.BigInteger),
)  # fmt: skip
COLUMNS = ("who", "at", "value", "n")
AT = datetime(2026, 11, 20, 15, tzinfo=UTC)


@pytest.fixture
def probe(pg_engine):
    METADATA.drop_all(pg_engine)
    METADATA.create_all(pg_engine)
    yield pg_engine
    METADATA.drop_all(pg_engine)


def stored(engine) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(TABLE).order_by(TABLE.c.who, TABLE.c.n))]


def test_the_childs_rows_and_the_parents_are_stored_in_one_transaction(probe):
    values = np.random.default_rng(0).normal(size=5000)  # inherited by the child, not sent to it
    parent = os.getpid()

    def child_rows():
        assert os.getpid() != parent, "computed in the child process"
        return (("child", AT, float(v), i) for i, v in enumerate(values))

    with write_transaction(probe) as conn:
        with ForkedCopy(conn, TABLE, COLUMNS, child_rows) as child:
            parents = [("parent", AT, None, 0)]  # computed while the child's rows are stored
            child.wait()
        copy_rows(conn, TABLE, COLUMNS, parents)
    rows = stored(probe)
    assert rows[:-1] == [("child", AT, float(v), i) for i, v in enumerate(values)]  # floats bit for bit
    assert rows[-1] == ("parent", AT, None, 0)


def test_a_failing_child_raises_its_traceback_and_writes_nothing(probe):
    def child_rows():
        yield ("child", AT, 1.0, 1)
        raise ValueError("no metric for this window")

    failure = r"(?s)child process computing rows for forked_copy_probe failed.*ValueError: no metric for this window"
    with pytest.raises(RuntimeError, match=failure), write_transaction(probe) as conn:
        with ForkedCopy(conn, TABLE, COLUMNS, child_rows) as child:
            child.wait()
        copy_rows(conn, TABLE, COLUMNS, [("parent", AT, None, 0)])
    assert stored(probe) == []


class ParentFailed(Exception):
    pass


def test_a_child_left_running_by_a_failure_is_stopped(probe):
    def forever():
        while True:
            yield ("child", AT, 1.0, 1)

    pid = None
    with pytest.raises(ParentFailed), write_transaction(probe) as conn, ForkedCopy(conn, TABLE, COLUMNS, forever) as child:
        pid = child._pid
        raise ParentFailed
    assert pid is not None
    with pytest.raises(ChildProcessError):  # reaped: no such child any more
        os.waitpid(pid, os.WNOHANG)
    assert stored(probe) == []


@pytest.mark.timeout(60)  # without the lock held across the fork, the child hangs
def test_a_child_forked_while_another_thread_compiles_is_not_blocked(probe):
    """numba's compiler lock is held across the fork, so a thread compiling a kernel meanwhile
    cannot leave it locked in the child, which then compiles one itself."""
    import numba

    stop = threading.Event()

    def compile_in_a_loop():
        n = 0
        while not stop.is_set():
            n += 1
            numba.njit(lambda x, k=n: x + k)(1.0)  # a new function each time: a compile

    worker = threading.Thread(target=compile_in_a_loop, daemon=True)
    worker.start()
    try:
        for round_ in range(5):

            def child_rows(r=round_):
                kernel = numba.njit(lambda x: x * 2.0 + r)  # compiled in the child
                return [("child", AT, kernel(float(i)), i) for i in range(3)]

            with write_transaction(probe) as conn, ForkedCopy(conn, TABLE, COLUMNS, child_rows) as child:
                child.wait()
    finally:
        stop.set()
        worker.join()
    assert len(stored(probe)) == 15


def test_rows_the_server_refuses_fail_the_copy_and_the_child_is_reaped(probe):
    import psycopg

    def rows():
        yield (None, AT, 1.0, 0)  # "who" is NOT NULL
        for i in range(200_000):
            yield ("child", AT, 1.0, i)

    refused = pytest.raises(psycopg.errors.NotNullViolation)
    with refused, write_transaction(probe) as conn, ForkedCopy(conn, TABLE, COLUMNS, rows) as child:
        pid = child._pid
        child.wait()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    assert stored(probe) == []
