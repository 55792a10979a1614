"""A webhook receiver on loopback that checks signatures the way a user's receiver would."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    event_id: str
    event: str
    delivery: str
    signature_ok: bool
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    """Answers each POST with ``answer(event_id, n)`` (n: how many times that event came),
    after ``delay`` seconds; records every request."""

    secret: str
    answer: Callable[[str, int], int] = lambda _id, _n: 200
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                expected = "sha256=" + hmac.new(receiver.secret.encode(), body, hashlib.sha256).hexdigest()
                ok = hmac.compare_digest(expected, self.headers.get("X-Cvmon-Signature-256", ""))
                event_id = self.headers.get("X-Cvmon-Event-Id", "")
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver._lock:
                    n = 1 + sum(r.event_id == event_id for r in receiver.received)
                    status = receiver.answer(event_id, n) if ok else 401
                    receiver.received.append(Received(
                        event_id, self.headers.get("X-Cvmon-Event", ""), self.headers.get("X-Cvmon-Delivery", ""), ok,
                        json.loads(body), status,
                    ))  # fmt: skip
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/cvmon"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def ids(self, status: int | None = None) -> list[str]:
        with self._lock:
            return [r.event_id for r in self.received if status is None or r.status == status]
