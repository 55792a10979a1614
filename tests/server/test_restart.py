"""kill -9 the server in the middle of a stream of batches: nothing acknowledged is lost, and
retries of unacknowledged batches do not duplicate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa

from monitor.server.services.keys import create_key
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from testkit.servers import free_port
from tests.server.records import cls_record, register

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not


def _start(url: str, port: int, cwd) -> subprocess.Popen:
    env = {**os.environ, "CVMON_DATABASE_URL": url, "CVMON_SCHEDULER": "0"}
    log = cwd / "server.log"
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "monitor.server.cli", "serve", "--port", str(port), "--log-level", "warning"],
            env=env, cwd=cwd, stdout=sink, stderr=sink,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    raise RuntimeError(f"server did not start:\n{log.read_text()}")


def test_kill_9_loses_nothing_acknowledged(db, model_name, tmp_path):
    with write_transaction(db.engine) as conn:
        _, key = create_key(conn, scopes=["ingest", "read", "admin"], models=None, name="t", now=datetime.now(UTC))
    port = free_port()
    server = _start(db.url, port, tmp_path)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as c:
        register(c, model_name)
    batches = [[cls_record(model_name, f"b{b}-r{r}") for r in range(200)] for b in range(40)]
    acknowledged: set[str] = set()
    attempts = [0]
    done = threading.Event()

    def sender() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=10) as c:
            for batch in batches:
                while True:  # what an SDK does: retry the same batch until it is acknowledged
                    attempts[0] += 1
                    try:
                        r = c.post("/v1/predictions", json={"records": batch})
                    except httpx.TransportError:
                        time.sleep(0.05)
                        continue
                    if r.status_code == 200:
                        body = r.json()
                        assert body["accepted"] + body["duplicates"] == len(batch)
                        acknowledged.update(rec["prediction_id"] for rec in batch)
                        break
                    time.sleep(0.05)
        done.set()

    thread = threading.Thread(target=sender)
    thread.start()
    while len(acknowledged) < 10 * 200:
        time.sleep(0.005)
    server.send_signal(signal.SIGKILL)
    server.wait()
    killed_at = len(acknowledged)
    server = _start(db.url, port, tmp_path)
    try:
        assert done.wait(120)
        thread.join()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)
    p = t.predictions.c
    with db.engine.connect() as conn:
        ids = conn.execute(sa.select(p.prediction_id).where(p.model == model_name)).scalars().all()
    assert killed_at < 40 * 200, "the kill must happen mid-stream"
    assert len(ids) == len(set(ids)) == 40 * 200
    assert acknowledged <= set(ids)
    assert attempts[0] > 40  # some batches were retried across the restart
