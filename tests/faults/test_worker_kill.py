"""kill -9 a `cvmon worker` in the middle of the real evaluate job: PostgreSQL releases its lock,
and the next run completes the work — with exactly the results of an uninterrupted run.

(That a killed worker releases a probe job's lock is tests/jobs/test_locks.py; this is the same
with the evaluate job, hundreds of dirty hours and the results checked.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.server.jobs import run_once
from monitor.server.services.ingest import CohortPolicy, ingest_ground_truth, ingest_predictions
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.store import tables as t
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager
from monitor.server.store.writes import WINDOWS_PENDING
from tests.faults.servers import ROOT, scratch_database, wait_for, worker

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

HOURS = 400
CLASSES = ["a", "b", "c", "d"]


def _load(engine, settings: Settings, model: str, now: datetime) -> None:
    rng = np.random.default_rng(7)  # the same data for both models
    with write_transaction(engine) as conn:
        register_model(conn, model, "classification", CLASSES, 0.5, now=now)
    preds, labels = [], []
    for h in range(HOURS):
        ts = now - timedelta(hours=h + 1)
        for i in range(6):
            p = rng.dirichlet(np.ones(len(CLASSES)))
            pid = f"h{h}-{i}"
            preds.append({"prediction_id": pid, "model": model, "model_version": "v1", "timestamp": ts.isoformat(),
                          "probabilities": p.tolist(), "latency_ms": float(rng.uniform(1, 50)), "cohort": {"camera": f"c{i % 2}"}})  # fmt: skip
            labels.append({"prediction_id": pid, "model": model, "label": int(rng.integers(len(CLASSES)))})
    parts = PartitionManager(engine)
    for k in range(0, len(preds), 2000):
        assert ingest_predictions(
            engine, preds[k : k + 2000], now=now, partitions=parts, policy=CohortPolicy(settings)
        ).accepted == len(preds[k : k + 2000])
    assert ingest_ground_truth(engine, labels, now=now).accepted == len(labels)


def _marks(engine, model: str) -> tuple[int, int]:
    """(hours still to recompute, hours recomputed whose windows are not refreshed yet)."""
    d = t.dirty_hours.c
    with engine.connect() as conn:
        marks = conn.execute(sa.select(d.marked_at).where(d.model == model)).scalars().all()
    pending = sum(m == WINDOWS_PENDING for m in marks)
    return len(marks) - pending, pending


def _lock_held(engine, model: str) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND classid::int = hashtext('evaluate') AND objid::int = hashtext(:m) AND objsubid = 2"
        ), {"m": model}).scalar_one())  # fmt: skip


def _points(engine, model: str) -> list[tuple]:
    mp = t.metric_points.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(mp.window, mp.window_start, mp.version, mp.cohort_key, mp.cohort_value, mp.metric, mp["class"],
                      mp.value, mp.sample_count, mp.label_coverage)
            .where(mp.model == model, mp.metric.not_in(["throughput_per_second"]))
        ).all()  # fmt: skip
    return sorted(tuple(r) for r in rows)


def test_a_killed_worker_releases_the_evaluate_lock_and_the_next_run_completes_the_work(tmp_path):
    now = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)
    with scratch_database("cvmon_killjob") as url:
        settings = Settings(database_url=url, scheduler=False)
        engine = make_engine(url)
        proc = None
        try:
            for model in ("kill-a", "kill-b"):
                _load(engine, settings, model, now)
            assert _marks(engine, "kill-a") == (HOURS, 0)
            proc = worker(url, tmp_path / "worker.log")
            wait_for(
                lambda: _lock_held(engine, "kill-a") or not proc.alive(),
                "the worker to start evaluating kill-a",
                timeout=120,
            )
            assert proc.alive(), proc.output()[-3000:]
            wait_for(
                lambda: _marks(engine, "kill-a")[0] < HOURS - 20,
                "the worker to get some hours done",
                timeout=120,
                every=0.01,
            )
            proc.kill9()
            left, pending = _marks(engine, "kill-a")
            assert 0 < left < HOURS, f"{left} dirty hours left: the kill must land in the middle of the job"
            assert pending == HOURS - left  # recomputed, but the windows were never refreshed
            wait_for(
                lambda: not _lock_held(engine, "kill-a"), "PostgreSQL to release the dead worker's lock", timeout=30
            )

            # the next run, from another process: takes the lock and finishes the job
            done = subprocess.run(
                [sys.executable, "-m", "monitor.server.cli", "jobs", "run-once", "--model", "kill-a", "--job", "evaluate"],
                env={**os.environ, "CVMON_DATABASE_URL": url}, cwd=ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            assert " ok " in done.stdout, done.stdout
            assert _marks(engine, "kill-a") == (0, 0)

            # the twin, evaluated without interruption, is the reference
            assert [
                o.status for o in run_once(engine, settings, clock=lambda: now, models=["kill-b"], jobs=["evaluate"])
            ] == ["ok"]
            interrupted, reference = _points(engine, "kill-a"), _points(engine, "kill-b")
            assert len(reference) > HOURS
            assert interrupted == reference
            with engine.connect() as conn:
                run = conn.execute(
                    sa.select(t.job_runs).where(t.job_runs.c.job == "evaluate", t.job_runs.c.model == "kill-a")
                ).one()
            assert run.last_success is not None and run.last_error is None
        finally:
            if proc is not None:
                proc.stop()
            engine.dispose()
