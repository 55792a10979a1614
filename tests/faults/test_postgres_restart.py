"""Restart PostgreSQL under load: the API answers 503 with Retry-After (never 500) while the
database is away, recovers by itself when it is back, and the SDK's retries and spool deliver
every record exactly once.

The PostgreSQL here is a private cluster started for this test (never the shared server other
tests use): `cvmon serve` runs against it, SDK clients log predictions and ground truth, a prober
calls the read, write and key-verification paths, and the cluster is stopped and started again in
the middle.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from monitor.sdk import Client
from monitor.server.store import tables as t
from monitor.server.store.engine import make_engine
from testkit.servers import free_port
from tests.faults.servers import PrivatePostgres, create_key, serve, wait_for

MODEL = "restart-model"
CLASSES = ["a", "b", "c"]


@dataclass
class Probe:
    """Calls every kind of path in a loop and keeps (phase, status, Retry-After) of each answer."""

    base: str
    key: str
    phase: str = "before"
    answers: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        calls = [
            ("GET", f"/v1/models/{MODEL}", None),
            ("GET", "/v1/models", None),
            ("GET", f"/v1/models/{MODEL}/metrics", None),
            ("GET", "/metrics", None),
            ("GET", "/readyz", None),
            (
                "POST",
                "/v1/predictions",
                {"records": [{"prediction_id": "probe", "model": MODEL, "model_version": "v1", "predicted_class": 0}]},
            ),
            ("POST", "/v1/ground-truth", {"records": [{"prediction_id": "probe", "model": MODEL, "label": 0}]}),
        ]
        with httpx.Client(base_url=self.base, headers=headers, timeout=30) as c:
            i = 0
            while not self.stop.is_set():
                method, path, body = calls[i % len(calls)]
                i += 1
                try:
                    r = c.request(method, path, json=body)
                except httpx.TransportError:
                    continue
                self.answers.append((self.phase, f"{method} {path}", r.status_code, r.headers.get("retry-after")))
                time.sleep(0.02)


def test_postgres_restart_under_load_is_503_then_recovers_and_loses_nothing(tmp_path):
    pg = PrivatePostgres().init()
    server = None
    clients: list[Client] = []
    probe = None
    try:
        pg.start()
        pg.migrate()
        key = create_key(pg.url, ["ingest", "read", "admin"])
        port = free_port()
        # key cache off: every request verifies its key against the database, outage included
        server = serve(pg.url, port, tmp_path / "server.log", scheduler=True,
                       CVMON_KEY_CACHE_SECONDS="0", CVMON_EVALUATE_INTERVAL_SECONDS="1")  # fmt: skip
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as c:
            assert c.put(f"/v1/models/{MODEL}", json={"task": "classification", "classes": CLASSES}).status_code == 201

        probe = Probe(base, key)
        prober = threading.Thread(target=probe.run, daemon=True)
        prober.start()
        clients = [
            Client(base, model=MODEL, version="v1", api_key=key, classes=CLASSES, spool_dir=tmp_path / f"spool-{i}",
                   batch_size=50, flush_interval=0.1, retry_deadline=1.0, backoff_base=0.1, backoff_max=2.0, trace=False)
            for i in range(2)
        ]  # fmt: skip
        logged: list[str] = []
        labelled: list[str] = []
        stop_logging = threading.Event()

        def produce(mon: Client, n: int) -> None:
            for i in range(n):
                if stop_logging.is_set():
                    return
                pid = mon.log_classification([0.7, 0.2, 0.1], latency_ms=3.0, cohort={"camera": "c1"})
                logged.append(pid)
                if i % 3 == 0:
                    mon.log_ground_truth(pid, label="a")
                    labelled.append(pid)
                time.sleep(0.002)

        producers = [threading.Thread(target=produce, args=(mon, 100_000)) for mon in clients]
        for p in producers:
            p.start()
        engine = make_engine(pg.url)
        try:
            wait_for(lambda: _count(engine) > 500, "records to be stored before the restart")
        finally:
            engine.dispose()

        probe.phase = "stopping"
        pg.stop("fast")
        time.sleep(0.3)  # answers to requests that were served before the stop have arrived
        probe.phase = "outage"
        time.sleep(4)  # the SDK spools, the prober sees the API answer while the database is away
        probe.phase = "restarting"
        pg.start()
        probe.phase = "after"
        wait_for(lambda: _recent(probe, "after", 14) == {200}, "the API to recover by itself", timeout=60)
        # then connections die in the middle of statements (a failover, an administrator)
        probe.phase = "terminations"
        with psycopg.connect(pg.url.replace("+psycopg", ""), autocommit=True) as admin:
            for _ in range(30):
                admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
                )
                time.sleep(0.05)
        probe.phase = "after"
        wait_for(lambda: _recent(probe, "after", 14) == {200}, "the API to recover from the terminations", timeout=60)
        stop_logging.set()
        for p in producers:
            p.join()
        for mon in clients:
            assert mon.flush(timeout=90), mon.stats()
        stats = [mon.stats() for mon in clients]
        predictions, labels, counted = _rows(pg.url)
        pid = server.pid
        assert server.alive(), f"the server died during the outage:\n{server.output()[-3000:]}"
        log = server.output()
    finally:
        if probe is not None:
            probe.stop.set()
        for mon in clients:
            mon.close(timeout=5)
        if server is not None:
            server.stop()
        pg.destroy()

    assert pid == server.pid  # the same process recovered: nobody restarted it
    assert "Exception in ASGI application" not in log, log[-3000:]  # nothing unmapped, for the SDK's requests too
    outage = [a for a in probe.answers if a[0] == "outage"]
    statuses = Counter(a[2] for a in probe.answers)
    assert 500 not in statuses, [a for a in probe.answers if a[2] >= 500 and a[2] != 503][:5]
    assert {a[2] for a in outage} == {503}, Counter((a[1], a[2]) for a in outage)
    assert {a[2] for a in probe.answers if a[0] == "terminations"} <= {200, 503}
    assert len({a[1] for a in outage}) >= 5, "the outage was too short to probe every path"
    assert all(a[3] is not None and int(a[3]) > 0 for a in probe.answers if a[2] == 503)
    assert sum(s.spooled for s in stats) > 0, "the SDK never needed its spool: the outage proved nothing"
    assert sum(s.dropped for s in stats) == 0 and sum(s.rejected for s in stats) == 0
    assert set(logged) <= set(predictions)
    assert set(labelled) <= set(labels)
    assert counted == len(predictions) == len(set(predictions))  # each record stored and counted once


def _recent(probe: Probe, phase: str, n: int) -> set[int]:
    answers = [a[2] for a in probe.answers if a[0] == phase][-n:]
    return set(answers) if len(answers) >= n else set()


def _count(engine: sa.Engine) -> int:
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(t.predictions)).scalar_one())
    except sa.exc.OperationalError:
        return 0


def _rows(url: str) -> tuple[list[str], list[str], int]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            predictions = list(
                conn.execute(sa.select(t.predictions.c.prediction_id).where(t.predictions.c.model == MODEL)).scalars()
            )
            labels = [
                *conn.execute(
                    sa.select(t.ground_truth.c.prediction_id).where(t.ground_truth.c.model == MODEL)
                ).scalars(),
                *conn.execute(
                    sa.select(t.ground_truth_pending.c.prediction_id).where(t.ground_truth_pending.c.model == MODEL)
                ).scalars(),
            ]
            counted = conn.execute(
                sa.select(sa.func.sum(t.model_versions.c.predictions)).where(t.model_versions.c.model == MODEL)
            ).scalar_one()
    finally:
        engine.dispose()
    return predictions, labels, int(counted)


pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]
