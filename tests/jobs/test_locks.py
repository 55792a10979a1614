"""One run per (job, model) across processes on PostgreSQL; a killed worker releases its lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from itertools import pairwise

import psycopg
import pytest

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

PROBE = textwrap.dedent(
    """
    import os, sys, time
    from datetime import UTC, datetime
    import psycopg
    from monitor.server.jobs.runner import run_job
    from monitor.server.settings import Settings
    from monitor.server.store.engine import make_engine

    url, dsn, models, sleep, rounds = sys.argv[1], sys.argv[2], sys.argv[3].split(","), float(sys.argv[4]), int(sys.argv[5])
    engine = make_engine(url)
    settings = Settings(database_url=url)

    def slow(engine, model, *, settings, clock):
        start = time.time()
        time.sleep(sleep)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("INSERT INTO lock_probe VALUES (%s, %s, %s, %s)", (model, start, time.time(), os.getpid()))
        return "slept"

    for _ in range(rounds):
        for model in models:
            outcome = run_job(engine, "probe", slow, model, settings=settings, clock=lambda: datetime.now(UTC))
            print(outcome.status, model, flush=True)
    """
)


@pytest.fixture
def probe_table(pg_database):
    if pg_database is None:
        pytest.skip("PostgreSQL unreachable (allowed outside CI only; see the banner)")
    dsn = pg_database.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("CREATE TABLE IF NOT EXISTS lock_probe (model text, started float8, ended float8, pid int)")
        c.execute("TRUNCATE lock_probe")
    yield pg_database, dsn
    # the session database is shared: a table the migrations do not know fails `alembic check` later
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP TABLE lock_probe")


def _spawn(url: str, dsn: str, models: list[str], sleep: float, rounds: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", PROBE, url, dsn, ",".join(models), str(sleep), str(rounds)],
        stdout=subprocess.PIPE, text=True, env={**os.environ},
    )  # fmt: skip


def test_two_workers_never_run_the_same_job_and_model_at_once(probe_table):
    url, dsn = probe_table
    models = ["lock-a", "lock-b", "lock-c"]
    workers = [_spawn(url, dsn, models, 0.25, 3) for _ in range(2)]
    outputs = [w.communicate(timeout=120)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers)
    statuses = [line.split()[0] for out in outputs for line in out.splitlines()]
    assert "skipped" in statuses, "the workers never contended: the test proves nothing"
    with psycopg.connect(dsn) as c:
        runs = c.execute("SELECT model, started, ended, pid FROM lock_probe ORDER BY model, started").fetchall()
    assert {r[0] for r in runs} == set(models)
    assert len({r[3] for r in runs}) == 2  # both processes did some of the work
    for model in models:
        spans = [(s, e) for m, s, e, _ in runs if m == model]
        for (_, end), (start, _) in pairwise(spans):
            assert start >= end, f"two runs of (probe, {model}) overlapped"


def test_a_killed_worker_releases_its_lock(probe_table):
    url, dsn = probe_table
    holder = _spawn(url, dsn, ["lock-kill"], 60, 1)
    with psycopg.connect(dsn, autocommit=True) as c:  # wait until it holds the advisory lock
        deadline = time.monotonic() + 30
        while not c.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted").fetchone()[0]:
            assert time.monotonic() < deadline, "the worker never took the lock"
            time.sleep(0.05)
    blocked = _spawn(url, dsn, ["lock-kill"], 0, 1)
    assert blocked.communicate(timeout=60)[0].split()[0] == "skipped"
    holder.send_signal(signal.SIGKILL)
    holder.communicate(timeout=30)
    after = _spawn(url, dsn, ["lock-kill"], 0, 1)
    assert after.communicate(timeout=60)[0].split()[0] == "ok"
