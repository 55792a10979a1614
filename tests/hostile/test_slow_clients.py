"""Slow clients against a real ``cvmon serve``: half-sent headers are timed out with a 408, a body
that stops arriving is a 408, connections past the cap get a prompt 503, and /healthz answers
throughout. The server runs as a subprocess with short timeouts so the test takes seconds."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testkit.servers import free_port
from tests.faults.servers import Cvmon, serve, wait_for

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 2
BODY_TIMEOUT = 2


@pytest.fixture
def server(db, tmp_path: Path) -> Iterator[tuple[str, Cvmon]]:
    if db.is_pg:
        pytest.skip("one database is enough: connections are handled before any database call")
    port = free_port()
    proc = serve(
        db.url, port, tmp_path / "serve.log",
        CVMON_AUTH_DISABLED="1",
        CVMON_HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT),
        CVMON_HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
        CVMON_HTTP_MAX_CONNECTIONS="1500",
    )  # fmt: skip
    try:
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.stop()


def _open(base: str, n: int, data: bytes) -> list[socket.socket]:
    port = int(base.rsplit(":", 1)[1])
    out = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(data)
        s.setblocking(False)
        out.append(s)
    return out


def _closed_by_server(sockets: list[socket.socket], answers: dict[int, bytes]) -> int:
    """How many of ``sockets`` the server has answered and closed (what it sent kept per socket)."""
    closed = 0
    for s in sockets:
        got = answers.setdefault(s.fileno(), b"")
        try:
            while chunk := s.recv(4096):
                got += chunk
            closed += 1  # orderly close after the answer
        except BlockingIOError:
            pass
        except ConnectionResetError:
            closed += 1
        answers[s.fileno()] = got
    return closed


def test_half_sent_headers_are_timed_out_while_healthz_answers(server):
    base, proc = server
    slow = _open(base, 1100, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    try:
        # the server is not tied up by them: a well-behaved client is answered at once
        with httpx.Client(timeout=5) as c:
            assert c.get(f"{base}/healthz").status_code == 200
        answers: dict[int, bytes] = {}
        wait_for(lambda: _closed_by_server(slow, answers) == len(slow), "every slow connection to be closed", timeout=60)
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers.values()), {a[:40] for a in answers.values()}
        with httpx.Client(timeout=5) as c:
            assert c.get(f"{base}/healthz").status_code == 200
    finally:
        for s in slow:
            s.close()
    assert proc.alive()


def test_a_connection_that_sends_nothing_is_closed(server):
    base, _ = server
    idle = _open(base, 50, b"")
    try:
        answers: dict[int, bytes] = {}
        wait_for(lambda: _closed_by_server(idle, answers) == len(idle), "the silent connections to be closed", timeout=30)
    finally:
        for s in idle:
            s.close()


def test_a_body_that_stops_arriving_is_a_408(server):
    base, _ = server
    head = (
        b"POST /v1/predictions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    stalled = _open(base, 20, head + b'{"records": [')
    try:
        answers: dict[int, bytes] = {}
        wait_for(lambda: _closed_by_server(stalled, answers) == len(stalled), "the stalled bodies to be answered", timeout=30)
        assert all(a.startswith(b"HTTP/1.1 408") for a in answers.values()), {a[:40] for a in answers.values()}
        assert all(b"CVMON_HTTP_BODY_TIMEOUT_SECONDS" in a for a in answers.values())
    finally:
        for s in stalled:
            s.close()


def test_connections_past_the_cap_get_a_prompt_503(db, tmp_path):
    if db.is_pg:
        pytest.skip("one database is enough: connections are handled before any database call")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = serve(
        db.url, port, tmp_path / "serve.log",
        CVMON_AUTH_DISABLED="1", CVMON_HTTP_HEADER_TIMEOUT_SECONDS="3", CVMON_HTTP_MAX_CONNECTIONS="100",
    )  # fmt: skip
    slow: list[socket.socket] = []
    try:
        slow = _open(base, 150, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        with httpx.Client(timeout=5) as c:
            r = c.get(f"{base}/healthz")  # answered, not left hanging: the cap is a 503
            assert r.status_code == 503
        answers: dict[int, bytes] = {}
        wait_for(lambda: _closed_by_server(slow, answers) == len(slow), "the slow connections to be closed", timeout=60)
        with httpx.Client(timeout=5) as c:
            assert c.get(f"{base}/healthz").status_code == 200
    finally:
        for s in slow:
            with contextlib.suppress(OSError):
                s.close()
        proc.stop()
