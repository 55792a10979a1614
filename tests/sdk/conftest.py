"""Fixtures for the SDK: a real server that can start *after* the client began logging."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from testkit.servers import ThreadServer, free_port
from tests.conftest import Database

CLASSES = ["scratch", "dent", "ok"]


@dataclass
class LateServer:
    """A cvmon server on a port chosen up front: nothing listens there until ``start()``."""

    db: Database
    port: int
    key: str
    model: str
    _servers: list[ThreadServer]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        from monitor.server.app import create_app
        from monitor.server.settings import Settings

        server = ThreadServer(create_app(Settings(database_url=self.db.url, scheduler=False)))
        server.port = self.port
        server.server.config.port = self.port
        self._servers.append(server.__enter__())

    def stop(self) -> None:
        while self._servers:
            self._servers.pop().__exit__()

    def prediction_ids(self) -> list[str]:
        return self.column("prediction_id")

    def column(self, name: str, table: str = "predictions") -> list[Any]:
        from monitor.server.store import tables as t

        tab = getattr(t, table)
        with self.db.engine.connect() as conn:
            return list(conn.execute(sa.select(tab.c[name]).where(tab.c.model == self.model)).scalars())

    def rows(self, table: str = "predictions") -> list[sa.Row[Any]]:
        from monitor.server.store import tables as t

        tab = getattr(t, table)
        with self.db.engine.connect() as conn:
            return list(conn.execute(sa.select(tab).where(tab.c.model == self.model)))


def register(db: Database, model: str, task: str = "classification", classes: list[str] | None = None) -> None:
    from monitor.server.services.models import register_model
    from monitor.server.store.engine import write_transaction

    with write_transaction(db.engine) as conn:
        register_model(conn, model, task, classes or CLASSES, 0.5, now=datetime.now(UTC))


def ingest_key(db: Database) -> str:
    from monitor.server.services.keys import create_key
    from monitor.server.store.engine import write_transaction

    with write_transaction(db.engine) as conn:
        _, text = create_key(conn, scopes=["ingest", "read", "admin"], models=None, name="sdk", now=datetime.now(UTC))
    return text


@pytest.fixture
def late_server(db: Database, model_name: str) -> Iterator[LateServer]:
    register(db, model_name)
    server = LateServer(db, free_port(), ingest_key(db), model_name, [])
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def live_server(late_server: LateServer) -> LateServer:
    late_server.start()
    return late_server


def ok(n: int, duplicates: int = 0) -> Any:
    from monitor.sdk import Response

    return Response(200, json.dumps({"accepted": n - duplicates, "duplicates": duplicates, "rejected": []}).encode())
