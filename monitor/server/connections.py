"""The HTTP protocol ``cvmon serve`` runs: uvicorn's httptools protocol with a header timeout.

uvicorn times out idle keep-alive connections but not a connection that opened and then sends its
request line and headers slowly, or not at all (slow-loris): each holds a socket and counts
against the connection cap for as long as the client likes. Here a connection must deliver each
request's headers within ``header_timeout`` seconds of opening (the first request) or of the
request's first byte (later ones on a keep-alive connection); past it, the answer is 408 and the
connection is closed. Body pauses are bounded in the application (monitor/server/api/body.py).

Only the asyncio protocol methods and httptools' parser callbacks are overridden, each calling
uvicorn's own.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_TIMEOUT_BODY = b"the request headers did not arrive in time\n"
_TIMEOUT_ANSWER = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_BODY), _TIMEOUT_BODY)
)


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """``functools.partial(HeaderTimeoutProtocol, header_timeout=10.0)`` is uvicorn's ``http``."""

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        if self._header_timer is None:
            self._header_timer = asyncio.get_running_loop().call_later(self._header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _timed_out(self) -> None:
        self._header_timer = None
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(_TIMEOUT_ANSWER)
            transport.close()
