"""``Client("nats://host:4222/<subject prefix>")``: batches published to NATS JetStream.

Each batch (the same gzip body as over HTTP) is published to ``<prefix>.predictions`` or
``<prefix>.ground-truth`` (prefix ``cvmon.ingest`` by default) and counts as delivered once the
stream has stored it (JetStream's publish acknowledgement); ``cvmon consume nats`` stores it in
the database from there. Everything else is the sender's: retries, the spool while the broker is
unreachable, halving a batch over the server's ``max_payload``.

URL forms: ``nats://host:4222``, ``nats://user:password@host``, ``nats://TOKEN@host``,
``tls://host:4222`` (TLS); query options ``creds=/path/user.creds`` (JWT + NKey) and
``ca=/path/ca.pem``. Needs ``pip install 'cvmon[nats]'`` (nats-py), imported only here.

nats-py is asyncio: the transport runs one event loop in a daemon thread of its own and the
sender thread waits on it, so the caller's own event loop (if any) is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any, Final

from monitor.errors import require
from monitor.sdk._records import GROUND_TRUTH, PATHS, PREDICTION
from monitor.sdk._transport import Response

DEFAULT_PREFIX: Final = "cvmon.ingest"
#: Subject suffix per request path.
SUFFIX: Final = {PATHS[PREDICTION]: "predictions", PATHS[GROUND_TRUTH]: "ground-truth"}

log = logging.getLogger("monitor.sdk")


class NATSTransport:
    """Publishes batches to JetStream; see the module docstring for the URL."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("nats", "tls") or not parts.hostname:
            raise ValueError(f"url must look like nats://host:4222/subject.prefix, not {url!r}")
        self._nats = require("nats", feature=f"Client('{parts.scheme}://...')", extra="nats")
        query = dict(urllib.parse.parse_qsl(parts.query))
        unknown = set(query) - {"creds", "ca"}
        if unknown:
            raise ValueError(f"unknown option {sorted(unknown)[0]!r} in {url!r}; known: creds, ca")
        self.prefix = parts.path.strip("/").replace("/", ".") or DEFAULT_PREFIX
        self._server = f"{parts.scheme}://{parts.hostname}:{parts.port or 4222}"
        # No reconnecting inside nats-py: a lost connection fails the publish, the sender retries
        # or spools it, and the next publish connects again (nats-py's own retries would hold
        # the sender for as long as the server is away).
        self._options: dict[str, Any] = {
            "connect_timeout": max(1, int(timeout)), "allow_reconnect": False, "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0.2, "error_cb": _quiet,
        }  # fmt: skip
        user = urllib.parse.unquote(parts.username) if parts.username else None
        if user is not None and parts.password is not None:
            self._options.update(user=user, password=urllib.parse.unquote(parts.password))
        elif user is not None:
            self._options["token"] = user
        if "creds" in query:
            self._options["user_credentials"] = query["creds"]
        if parts.scheme == "tls" or "ca" in query:
            self._options["tls"] = ssl.create_default_context(cafile=query.get("ca"))
        self._timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._js: Any = None

    def subject(self, path: str) -> str:
        return f"{self.prefix}.{SUFFIX[path]}"

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        subject = self.subject(path)
        loop = self._ensure_loop()
        future = asyncio.run_coroutine_threadsafe(self._publish(subject, body), loop)
        try:
            return future.result(self._timeout * 2 + 1)
        except TimeoutError as exc:
            future.cancel()
            raise ConnectionError(f"publish to {subject} on {self._server}: no answer") from exc

    async def _publish(self, subject: str, body: bytes) -> Response:
        import nats.errors as errors
        import nats.js.errors as js_errors

        try:
            if self._nc is None or self._nc.is_closed:
                self._nc = await self._nats.connect(self._server, **self._options)
                self._js = self._nc.jetstream()
            await self._js.publish(subject, body, timeout=self._timeout)
        except (errors.NoRespondersError, js_errors.NoStreamResponseError):
            return _problem(404, f"no JetStream stream answered for {subject!r} on {self._server} (none stores it, or "
                                 "the server is starting): start `cvmon consume nats` once (it creates the stream)")  # fmt: skip
        except errors.MaxPayloadError:
            return _problem(413, "the batch is over the server's max_payload")
        except errors.AuthorizationError as exc:
            return _problem(403, f"{self._server} refused: {exc}")
        except (TimeoutError, OSError, errors.Error) as exc:
            # no server, a timeout, a lost connection, or a JetStream error (stream full, ...): retried
            raise ConnectionError(f"publish to {subject} on {self._server}: {exc!r}") from exc
        return Response(202)

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="cvmon-nats", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._nc is not None:
            with contextlib.suppress(Exception):  # closing a connection that is already gone
                asyncio.run_coroutine_threadsafe(self._nc.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = self._nc = self._js = None


async def _quiet(exc: Exception) -> None:
    # nats-py logs every failed attempt with a traceback by default; the sender says it once a minute
    log.debug("nats: %r", exc)


def _problem(status: int, detail: str) -> Response:
    return Response(status, json.dumps({"detail": detail}).encode())
