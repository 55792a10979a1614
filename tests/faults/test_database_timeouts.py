"""A database that stops answering: API requests fail fast with 503 + Retry-After instead of
hanging, /readyz says so within 2 s, /healthz stays a pure liveness check, and nothing that was
acknowledged is lost. A locked database on both engines; a frozen PostgreSQL (SIGSTOP: the kernel
still accepts its connections, nothing answers) started for the test."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import httpx
import psycopg
import pytest
import sqlalchemy as sa

from testkit.servers import free_port
from tests.faults.servers import PrivatePostgres, serve, wait_for
from tests.server.records import cls_record, register

pytestmark = pytest.mark.slow  # a frozen or locked database, servers started per test

#: A client's patience: a request not answered in this time hangs as far as the test is concerned.
CLIENT_TIMEOUT = 15


def _records(model: str, prefix: str, n: int = 20) -> dict:
    return {"records": [cls_record(model, f"{prefix}{i}") for i in range(n)]}


class _Locker:
    """Holds the lock every ingest needs, from a connection of its own, until released."""

    def __init__(self, db) -> None:
        if db.is_pg:
            self.conn = psycopg.connect(db.url.replace("postgresql+psycopg://", "postgresql://"))
            self.conn.execute("LOCK TABLE models IN ACCESS EXCLUSIVE MODE")
        else:
            self.conn = sqlite3.connect(db.url.removeprefix("sqlite:///"), isolation_level=None)
            self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.rollback() if isinstance(self.conn, psycopg.Connection) else self.conn.execute("ROLLBACK")
        self.conn.close()


def test_a_locked_database_is_a_prompt_503_and_the_retry_is_stored(make_api, db, model_name):
    api = make_api()  # the default lock timeout (3 s)
    with api.admin() as c:
        register(c, model_name)
    locker = _Locker(db)
    try:
        with api.admin() as c:
            r = c.post("/v1/predictions", json=_records(model_name, "a"), timeout=CLIENT_TIMEOUT)
            assert r.status_code == 503, r.text
            assert int(r.headers["retry-after"]) > 0
            assert c.get("/healthz", timeout=1).status_code == 200
    finally:
        locker.release()
    with api.admin() as c:
        r = c.post("/v1/predictions", json=_records(model_name, "a"))
        assert r.status_code == 200 and r.json()["accepted"] == 20
        assert c.get(f"/v1/models/{model_name}").json()["counts"]["predictions"] == 20


@pytest.mark.slow
def test_a_frozen_postgres_gives_fast_503s_and_loses_nothing(tmp_path: Path):
    pg = PrivatePostgres().init()
    pg.start()
    proc = None
    try:
        pg.migrate()
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = serve(pg.url, port, tmp_path / "serve.log", CVMON_AUTH_DISABLED="1")  # the default timeouts
        with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as c:
            register(c, "frozen")
            # acknowledged before the freeze; several requests at once leave several pooled connections
            acked = [c.post("/v1/predictions", json=_records("frozen", "a")) for _ in range(2)]
            assert [r.json()["accepted"] for r in acked] == [20, 0]

        pg.freeze()
        answers: list[httpx.Response] = []

        def ingest(prefix: str) -> None:
            with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as c:
                answers.append(c.post("/v1/predictions", json=_records("frozen", prefix)))

        writers = [threading.Thread(target=ingest, args=(p,)) for p in ("b", "c", "b")]
        for t in writers:
            t.start()
        with httpx.Client(base_url=base) as c:
            assert c.get("/healthz", timeout=1).status_code == 200  # liveness never waits on the database
            ready = c.get("/readyz", timeout=2)  # a probe's patience: answered inside it
            assert ready.status_code == 503 and "retry-after" in ready.headers
            assert c.get("/v1/models", timeout=CLIENT_TIMEOUT).status_code == 503
        for t in writers:
            t.join()
        assert [r.status_code for r in answers] == [503] * 3, [r.text for r in answers]
        assert all(int(r.headers["retry-after"]) > 0 for r in answers)

        pg.thaw()
        with httpx.Client(base_url=base, timeout=CLIENT_TIMEOUT) as c:
            wait_for(lambda: c.get("/readyz").status_code == 200, "/readyz after the thaw", timeout=60)
            for prefix in ("b", "c"):  # the clients' retries
                r = c.post("/v1/predictions", json=_records("frozen", prefix))
                assert r.status_code == 200 and r.json()["rejected"] == []
            assert c.get("/v1/models/frozen").json()["counts"]["predictions"] == 60
        engine = sa.create_engine(pg.url)
        try:
            with engine.connect() as conn:
                ids = conn.execute(sa.text("SELECT prediction_id FROM predictions WHERE model = 'frozen'")).scalars().all()
        finally:
            engine.dispose()
        assert sorted(ids) == sorted(f"{p}{i}" for p in "abc" for i in range(20))  # each once, none lost
        assert proc.alive()
    finally:
        if proc is not None:
            proc.stop()
        pg.destroy()
