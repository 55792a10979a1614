"""ForkedCopy: rows computed by a forked child process and COPYed by the parent (PostgreSQL, Linux)."""

from __future__ import annotations

import os
import threading
import time
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


@pytest.mark.timeout(120)  # without kernels_idle() held across the fork, the child hangs now and then
def test_a_child_forked_while_another_thread_compiles_is_not_blocked(probe):
    """No thread is inside a kernel, numba's compiler or LLVM when the child is forked, so the
    child, compiling a kernel of its own, never waits for a lock that a thread of the parent held."""
    from monitor.metrics._jit import kernel

    stop = threading.Event()

    def compile_in_a_loop():
        n = 0
        while not stop.is_set():
            n += 1

            def add(x, k=n):
                return x + k

            kernel(add)(1.0)  # a new function each time: a compile

    worker = threading.Thread(target=compile_in_a_loop, daemon=True)
    worker.start()
    try:
        for round_ in range(30):

            def child_rows(r=round_):
                def twice(x):
                    return x * 2.0 + r

                return [("child", AT, kernel(twice)(float(i)), i) for i in range(3)]  # compiled in the child

            with write_transaction(probe) as conn, ForkedCopy(conn, TABLE, COLUMNS, child_rows) as child:
                child.wait()
    finally:
        stop.set()
        worker.join()
    assert len(stored(probe)) == 90


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


@pytest.mark.parametrize("semaphores", [True, False])
def test_a_queue_worked_off_by_parent_and_child_hands_out_each_item_once(probe, monkeypatch, semaphores):
    """The evaluate job's short windows: the child and the parent take from one queue."""
    import importlib
    import multiprocessing

    evaluate_module = importlib.import_module("monitor.server.jobs.evaluate")
    if not semaphores:  # a machine without /dev/shm: the child takes everything
        monkeypatch.setattr(multiprocessing.get_context("fork"), "Value", lambda *a: (_ for _ in ()).throw(OSError(38, "no sem_open")))
    claims = evaluate_module._Claims()
    items = list(range(3000))
    mine = claims.take(items, child=False)
    parents = [("parent", AT, None, next(mine))] if semaphores else []  # one before the child exists
    with write_transaction(probe) as conn:
        with ForkedCopy(conn, TABLE, COLUMNS, lambda: (("child", AT, None, i) for i in claims.take(items, child=True))) as child:
            deadline = time.monotonic() + 30
            while semaphores and claims._next.value < 2 and time.monotonic() < deadline:  # until the child has taken one
                time.sleep(0.001)
            parents += [("parent", AT, None, i) for i in mine]
            child.wait()
        copy_rows(conn, TABLE, COLUMNS, parents)
    rows = stored(probe)
    assert sorted(n for _, _, _, n in rows) == items
    assert {who for who, *_ in rows} == ({"child", "parent"} if semaphores else {"child"})


def test_where_the_fork_fails_the_rows_are_computed_and_stored_here(probe, monkeypatch, caplog):
    def no_fork():
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(os, "fork", no_fork)
    parent = os.getpid()
    with write_transaction(probe) as conn, ForkedCopy(conn, TABLE, COLUMNS, lambda: [("here", AT, float(os.getpid() == parent), 1)]) as child:
        child.wait()
    assert stored(probe) == [("here", AT, 1.0, 1)]
    assert "could not fork a process for the rows of forked_copy_probe (" in caplog.text
