"""A seeded fleet (tests/console/seed.py) on PostgreSQL and SQLite, served by the real app on
loopback with its clock at the seed's ``NOW``; keys of every kind the console tests need."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from testkit.servers import ThreadServer
from tests.console.seed import NOW, Seeded, SimClock, seed


@dataclass
class Console:
    url: str
    data: Seeded
    engine: Any
    clock: SimClock
    kind: str
    keys: dict[str, str]

    def client(self, **kwargs: Any) -> Any:
        import httpx

        return httpx.Client(base_url=self.url, timeout=30, follow_redirects=False, **kwargs)

    @contextmanager
    def signed_in(self, key: str = "read") -> Iterator[Any]:
        """An httpx client with a live session of ``self.keys[key]``."""
        with self.client() as client:
            client.get("/login")
            token = client.cookies.get("cvmon_csrf")
            answer = client.post("/login", data={"key": self.keys[key], "csrf": token, "next": "/"})
            assert answer.status_code == 303, answer.text
            yield client


def create_key(engine: Any, scopes: list[str], models: list[str] | None = None, name: str = "test") -> str:
    from monitor.server.services.keys import create_key as create
    from monitor.server.store.engine import write_transaction

    with write_transaction(engine) as conn:
        return create(conn, scopes=scopes, models=models, name=name, now=NOW)[1]


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def console(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    from monitor.server.app import create_app
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine

    if request.param == "postgresql":
        url = request.getfixturevalue("pg_database")
        if url is None:
            pytest.skip("PostgreSQL unreachable (allowed outside CI only; see the banner)")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('console') / 'cvmon.db'}"
    engine = make_engine(url)
    if request.param == "sqlite":
        migrate.upgrade(engine)
    data = seed(engine, url)
    keys = {
        "read": create_key(engine, ["read"], name="reader"),
        "admin": create_key(engine, ["read", "admin"], name="on-call"),
        "ingest": create_key(engine, ["ingest"], name="camera"),
        "bound": create_key(engine, ["read", "admin"], [data.other], name="other-team"),
    }
    clock = SimClock(NOW)
    server_engine = make_engine(url)
    server = ThreadServer(create_app(data.settings, engine=server_engine, clock=clock)).__enter__()
    try:
        yield Console(server.url, data, engine, clock, request.param, keys)
    finally:
        server.__exit__()
        server_engine.dispose()
        engine.dispose()
