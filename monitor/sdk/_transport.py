"""The transport seam: how a batch body reaches the server.

The sender only needs ``post(path, body, headers) -> Response``. :class:`HTTPTransport` does that
with the standard library's :mod:`http.client` (one keep-alive connection, reopened after a
failure), so ``pip install cvmon`` adds no HTTP library to an inference process.
:func:`transport_for` picks the transport by the URL's scheme: ``nats://`` / ``tls://`` publish to
NATS JetStream (:mod:`._nats`) and ``mqtt://`` / ``mqtts://`` to an MQTT broker (:mod:`._mqtt`);
their client libraries are optional extras, imported only for such a URL.
:class:`MockTransport` calls a function instead, for tests of code that uses the SDK (in the
manner of httpx's ``MockTransport``).

A transport raises :class:`OSError` (``ConnectionError`` and friends) when nothing came back;
the sender retries those. Any HTTP answer, error statuses included, is a :class:`Response`.
"""

from __future__ import annotations

import gzip
import http.client
import json
import ssl
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Request:
    """One POST as the server would receive it."""

    path: str
    headers: Mapping[str, str]
    body: bytes

    def records(self) -> list[dict[str, Any]]:
        """The decoded ``records`` of the (gzip) JSON body."""
        raw = gzip.decompress(self.body) if self.headers.get("Content-Encoding") == "gzip" else self.body
        records: list[dict[str, Any]] = json.loads(raw)["records"]
        return records


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP answer. ``headers`` keys are lower case."""

    status: int
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)


class Transport(Protocol):
    """What the sender needs from a transport."""

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        """Send one request; raise :class:`OSError` when no answer came back."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...


class HTTPTransport:
    """HTTP/1.1 over :mod:`http.client` with one reused connection.

    ``base_url`` may carry a path prefix (``https://gw.example/cvmon``) that is put before every
    request path. Only the sender thread uses a transport, so it needs no lock.
    """

    def __init__(self, base_url: str, *, timeout: float = 10.0, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must look like http://host:port or https://host, not {base_url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._timeout = timeout
        self._ssl = ssl_context
        self._conn: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._https:
            ctx = self._ssl or ssl.create_default_context()
            return http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=ctx)
        return http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        reused = self._conn is not None
        try:
            return self._post(path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            if not reused:
                raise ConnectionError(f"POST {path}: {exc!r}") from exc
        # A kept-alive connection may have been closed by the server (idle timeout, restart)
        # while we were not looking: that says nothing about the server, so try once on a new one.
        try:
            return self._post(path, body, headers)
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise ConnectionError(f"POST {path}: {exc!r}") from exc

    def _post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        if self._conn is None:
            self._conn = self._connect()
        conn = self._conn
        conn.request("POST", self._prefix + path, body=body, headers=dict(headers))
        answer = conn.getresponse()
        data = answer.read()
        if answer.will_close:
            self.close()
        return Response(answer.status, data, {k.lower(): v for k, v in answer.getheaders()})

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class MockTransport:
    """A transport that calls ``handler(request) -> Response`` instead of the network.

    The handler may raise :class:`ConnectionError` to play an unreachable server.
    """

    def __init__(self, handler: Callable[[Request], Response]) -> None:
        self._handler = handler

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Response:
        return self._handler(Request(path, dict(headers), body))

    def close(self) -> None:
        pass


def transport_for(url: str, *, timeout: float = 10.0) -> Transport:
    """The transport for ``url``'s scheme; raises :class:`ValueError` for a malformed URL and
    :class:`monitor.errors.MissingExtra` (with the ``pip install`` to run) when the broker's
    client library is not installed. Nothing connects until the first request."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme in ("nats", "tls"):
        from monitor.sdk._nats import NATSTransport

        return NATSTransport(url, timeout=timeout)
    if scheme in ("mqtt", "mqtts"):
        from monitor.sdk._mqtt import MQTTTransport

        return MQTTTransport(url, timeout=timeout)
    if scheme in ("http", "https"):
        return HTTPTransport(url, timeout=timeout)
    raise ValueError(f"url must start with http://, https://, nats://, tls://, mqtt:// or mqtts://, not {url!r}")
