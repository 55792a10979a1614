"""A client-side deadline for PostgreSQL connections that stop answering.

``statement_timeout`` and ``lock_timeout`` are enforced by the server, so a server that stops
answering altogether (a frozen process, a host that hangs while its kernel still acknowledges TCP)
enforces neither, and libpq has no read timeout: the calling thread would wait forever, and with it
the request. The :class:`Watchdog` gives every checked-out connection a deadline, renewed when a
statement starts, and shuts the connection's socket down when one passes. The blocked call then
fails at once as a lost connection, SQLAlchemy discards the connection, and the request answers 503.

The deadline is set past the server's own timeouts, so a live server always cancels first and the
watchdog only acts on a server that cannot.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("cvmon.store")


@dataclass
class _Armed:
    deadline: float
    #: a duplicate of the connection's socket descriptor, so the number cannot be reused by
    #: another socket between arming and firing
    fd: int


class Watchdog:
    """Deadlines for the connections of one engine, watched by one daemon thread."""

    def __init__(self, seconds: float, *, name: str = "cvmon-db-watchdog") -> None:
        self.seconds = seconds
        self._armed: dict[int, _Armed] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def arm(self, dbapi_conn: Any, seconds: float | None = None) -> None:
        """Give ``dbapi_conn`` (a psycopg connection) a deadline ``seconds`` from now (default: the
        watchdog's), replacing any earlier one."""
        deadline = time.monotonic() + (self.seconds if seconds is None else seconds)
        with self._lock:
            entry = self._armed.get(id(dbapi_conn))
            if entry is not None:
                entry.deadline = deadline
            elif not self._stopped:
                try:
                    fd = os.dup(dbapi_conn.fileno())
                except (OSError, ValueError, Exception):  # closed already: nothing to guard
                    return
                self._armed[id(dbapi_conn)] = _Armed(deadline, fd)
                self._wake.notify()

    def disarm(self, dbapi_conn: Any) -> None:
        with self._lock:
            entry = self._armed.pop(id(dbapi_conn), None)
        if entry is not None:
            os.close(entry.fd)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            entries, self._armed = list(self._armed.values()), {}
            self._wake.notify()
        for entry in entries:
            os.close(entry.fd)

    def _run(self) -> None:
        while True:
            with self._lock:
                if self._stopped:
                    return
                now = time.monotonic()
                due = [k for k, e in self._armed.items() if e.deadline <= now]
                fired = [self._armed.pop(k) for k in due]
                if not fired:
                    nearest = min((e.deadline for e in self._armed.values()), default=now + 60)
                    self._wake.wait(max(0.01, nearest - now))
                    continue
            for entry in fired:
                log.warning("a database call passed its deadline (the server does not answer): closing its connection")
                sock = socket.socket(fileno=entry.fd)
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
