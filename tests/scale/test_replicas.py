"""Scale-out on one machine: two `cvmon serve` replicas (each with its scheduler) and two
`cvmon worker` processes against one PostgreSQL database.

  * ingest through both replicas adds up: every replica reports the sum, a batch retried on the
    other replica is a duplicate, and /metrics from either replica carries the same counters;
  * every (job, model) runs in one process at a time: a backlog of hundreds of dirty hours makes
    each evaluate run last seconds while four schedulers tick every two, and the runs the
    processes log never overlap;
  * once evaluation has caught up, both replicas answer the same metric history.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from monitor.sdk import Client
from monitor.server.services.ingest import CohortPolicy, ingest_predictions
from monitor.server.services.keys import create_key
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.store import tables as t
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager
from testkit.servers import free_port
from tests.faults.servers import Cvmon, scratch_database, serve, wait_for, worker

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

CLASSES = ["a", "b", "c"]
MODELS = ["scale-a", "scale-b"]
BACKLOG_HOURS = 1000
#: "2026-11-25 21:28:58,978 DEBUG cvmon.jobs: job evaluate for model scale-a: ... (3.21s)" (per-tick
#: lines are DEBUG: the processes run with --log-level debug)
RUN = re.compile(r"^(\S+ \S+) DEBUG cvmon\.jobs: job (\w+) for model (\S+): .* \((\d+\.\d+)s\)$", re.M)
#: Series read from the database: the same whichever replica is scraped.
STORED_SERIES = ("cvmon_predictions", "cvmon_ground_truth", "cvmon_accuracy_ratio", "cvmon_labelled_predictions")


def _backlog(engine, settings: Settings, now: datetime) -> None:
    """Hundreds of dirty hours per model, so that each evaluate run takes seconds."""
    rng = np.random.default_rng(3)
    parts = PartitionManager(engine)
    for model in MODELS:
        recs = [
            {"prediction_id": f"old-{h}-{i}", "model": model, "model_version": "v1",
             "timestamp": (now - timedelta(hours=h + 2)).isoformat(), "probabilities": rng.dirichlet(np.ones(3)).tolist()}
            for h in range(BACKLOG_HOURS) for i in range(4)
        ]  # fmt: skip
        assert ingest_predictions(
            engine, recs, now=now, partitions=parts, policy=CohortPolicy(settings)
        ).accepted == len(recs)


def _runs(logs: dict[str, str]) -> dict[tuple[str, str], list[tuple[float, float, str]]]:
    """(job, model) -> [(start, end, process)] from the processes' log lines."""
    out: dict[tuple[str, str], list[tuple[float, float, str]]] = defaultdict(list)
    for process, text in logs.items():
        for stamp, job, model, seconds in RUN.findall(text):
            end = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out[(job, model)].append((end - float(seconds), end, process))
    return out


def _stored_series(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text) if f.name in STORED_SERIES for s in f.samples
    }  # fmt: skip


def test_two_replicas_and_two_workers_add_up_and_run_each_job_once(tmp_path):
    now = datetime.now(UTC)
    with scratch_database("cvmon_scale") as url:
        settings = Settings(database_url=url, scheduler=False)
        engine = make_engine(url)
        procs: list[Cvmon] = []
        try:
            with write_transaction(engine) as conn:
                for model in MODELS:
                    register_model(conn, model, "classification", CLASSES, 0.5, now=now)
                _, key = create_key(conn, scopes=["ingest", "read"], models=None, name="scale", now=now)
            _backlog(engine, settings, now)
            env = {"CVMON_EVALUATE_INTERVAL_SECONDS": "2"}
            ports = [free_port(), free_port()]
            procs += [
                serve(url, port, tmp_path / f"serve-{i}.log", scheduler=True, log_level="debug", **env)
                for i, port in enumerate(ports)
            ]
            procs += [worker(url, tmp_path / f"worker-{i}.log", log_level="debug", **env) for i in range(2)]
            bases = [f"http://127.0.0.1:{port}" for port in ports]

            # ingest through both replicas at once; one batch is sent to both
            sent: dict[str, set[str]] = {m: set() for m in MODELS}
            shared = [{"prediction_id": f"both-{i}", "model": MODELS[0], "model_version": "v1", "probabilities": [0.6, 0.3, 0.1]}
                      for i in range(100)]  # fmt: skip

            def produce(replica: int) -> None:
                for model in MODELS:
                    mon = Client(bases[replica], model=model, version="v1", api_key=key, classes=CLASSES,
                                 spool_dir=tmp_path / f"spool-{replica}-{model}", batch_size=200, trace=False)  # fmt: skip
                    ids = [
                        mon.log_classification([0.7, 0.2, 0.1], cohort={"camera": f"r{replica}"}) for _ in range(1500)
                    ]
                    for pid in ids[::3]:
                        mon.log_ground_truth(pid, label="a")
                    assert mon.flush(timeout=120), mon.stats()
                    mon.close()
                    sent[model].update(ids)
                r = httpx.post(
                    f"{bases[replica]}/v1/predictions",
                    json={"records": shared},
                    headers={"Authorization": f"Bearer {key}"},
                )
                assert r.status_code == 200

            producers = [threading.Thread(target=produce, args=(i,)) for i in range(2)]
            for p in producers:
                p.start()
            for p in producers:
                p.join()
            sent[MODELS[0]].update(r["prediction_id"] for r in shared)

            def caught_up() -> bool:
                with engine.connect() as conn:
                    return not conn.execute(sa.select(sa.func.count()).select_from(t.dirty_hours)).scalar_one()

            wait_for(caught_up, "the schedulers to evaluate the backlog and the new hour", timeout=180, every=0.5)
            clients = [httpx.Client(base_url=b, headers={"Authorization": f"Bearer {key}"}, timeout=30) for b in bases]
            for model in MODELS:
                infos = [c.get(f"/v1/models/{model}").json() for c in clients]
                expected = len(sent[model]) + BACKLOG_HOURS * 4
                assert infos[0]["counts"]["predictions"] == infos[1]["counts"]["predictions"] == expected
                assert infos[0]["counts"] == infos[1]["counts"]
                history = [
                    c.get(f"/v1/models/{model}/metrics", params={"window": "1h", "limit": 10_000}).json()
                    for c in clients
                ]
                assert history[0] == history[1] and len(history[0]["series"]) > BACKLOG_HOURS
            scraped = [_stored_series(c.get("/metrics").text) for c in clients]
            for c in clients:
                c.close()
            assert scraped[0] == scraped[1]
            assert (
                scraped[0][("cvmon_predictions_total", (("model", MODELS[0]), ("version", "v1")))]
                == len(sent[MODELS[0]]) + BACKLOG_HOURS * 4
            )
        finally:
            for proc in procs:
                proc.stop()
            engine.dispose()
        logs = {f"{p.args[0]}-{i}": p.output() for i, p in enumerate(procs)}

    runs = _runs(logs)
    evaluate = {m: runs[("evaluate", m)] for m in MODELS}
    assert all(evaluate.values()), runs.keys()
    processes = {proc for spans in runs.values() for _, _, proc in spans}
    assert len(processes) >= 3, f"only {processes} ran jobs: the schedulers did not compete"
    longest = max(end - start for spans in evaluate.values() for start, end, _ in spans)
    assert longest > 2, "no evaluate run outlasted a tick: nothing could have overlapped"
    for (job, model), spans in runs.items():
        spans.sort()
        for (s1, e1, p1), (s2, e2, p2) in itertools.pairwise(spans):
            assert s2 >= e1 - 0.02, (
                f"{job} for {model} ran in {p1} ({s1:.2f}-{e1:.2f}) and {p2} ({s2:.2f}-{e2:.2f}) at once"
            )
