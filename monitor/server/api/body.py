"""Request bodies: read whole or refused, within bounds of size, memory and time.

Two layers:

- :class:`BodyLimits`, an ASGI middleware in front of every route (FastAPI reads the bodies of
  pydantic endpoints before any dependency runs, so authentication cannot come first): a declared
  body over ``max_body_bytes`` is a 413 before a byte is read; the body bytes held by all requests
  of the process together are bounded by a :class:`BodyBudget` (past it, 503 with Retry-After); a
  body that stops arriving for ``read_timeout`` seconds is a 408.
- :func:`read_json` for the ingest endpoints: the Content-Type must be JSON (415 otherwise),
  gzip is decoded member by member to the end (a truncated stream or trailing bytes are a 400,
  never half a batch), and the decoded size counts against the same limit and budget. The
  decoding is :mod:`monitor.server.services.payload`'s, which the broker consumers share.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Annotated, Any, Final

from fastapi import Depends, HTTPException, Request, status
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitor.errors import LimitExceeded, WireError
from monitor.server.services.payload import gunzip, loads

#: nginx's status for a request whose client hung up before the answer.
CLIENT_CLOSED_REQUEST = 499
#: What a client refused for memory should wait: bodies in flight take well under a second.
BUSY_RETRY_AFTER_SECONDS: Final = 1
#: Where a request's :class:`Lease` is kept in the ASGI scope's state (``request.state``).
_LEASE_KEY: Final = "cvmon_body_lease"
_SEND_JSON: Final = "send the body as JSON with 'Content-Type: application/json'"


class BodyBudget:
    """Request-body bytes this process holds in memory, all requests together, up to ``limit``.

    A request is always admitted while nothing else is held, so a body of ``max_body_bytes`` can
    pass however the two limits compare. A parsed JSON body takes several times its bytes in
    Python objects (docs/operations.md), which this bounds in proportion.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.held and self.held + n > self.limit:
                return False
            self.held += n
            return True

    def give(self, n: int) -> None:
        with self._lock:
            self.held -= n


class Lease:
    """One request's share of the budget, given back whole when the request ends."""

    def __init__(self, budget: BodyBudget) -> None:
        self.budget = budget
        self.held = 0

    def take(self, n: int) -> None:
        """Hold ``n`` more bytes, or raise the 503 that tells the client to come back."""
        if not self.budget.take(n):
            raise busy()
        self.held += n

    def give(self, n: int) -> None:
        n = min(n, self.held)
        self.budget.give(n)
        self.held -= n

    def close(self) -> None:
        self.give(self.held)


def busy() -> HTTPException:
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "the server holds as many request bodies as its memory bound allows (CVMON_MAX_BODY_BYTES_IN_FLIGHT); retry shortly",
        headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
    )


def too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body is over the limit of {limit} bytes (CVMON_MAX_BODY_BYTES); send smaller batches",
    )


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() and len(value) < 19 else None
    return None


class BodyLimits:
    """The size, memory and time bounds of every request body (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, budget: BodyBudget, max_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.budget = budget
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _declared_length(scope)
        lease = Lease(self.budget)
        try:
            if declared is not None and declared > self.max_bytes:
                await _answer(scope, receive, send, too_large(self.max_bytes))
                return
            if declared:
                try:
                    lease.take(declared)
                except HTTPException as exc:
                    await _answer(scope, receive, send, exc)
                    return
            scope.setdefault("state", {})[_LEASE_KEY] = lease
            await self.app(scope, self._receiver(receive, lease, declared), send)
        finally:
            lease.close()

    def _receiver(self, receive: Receive, lease: Lease, declared: int | None) -> Receive:
        received = 0
        done = False

        async def guarded() -> Message:
            nonlocal received, done
            if done:  # the body is complete: what follows (a disconnect) may take any time
                return await receive()
            try:
                async with asyncio.timeout(self.read_timeout):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    status.HTTP_408_REQUEST_TIMEOUT,
                    f"no byte of the request body arrived for {self.read_timeout:g} s (CVMON_HTTP_BODY_TIMEOUT_SECONDS)",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request":
                done = True
                return message
            size = len(message.get("body", b""))
            received += size
            if received > self.max_bytes:
                raise too_large(self.max_bytes)
            if declared is None:  # chunked: held as it arrives
                lease.take(size)
            done = not message.get("more_body", False)
            return message

        return guarded


async def _answer(scope: Scope, receive: Receive, send: Send, exc: HTTPException) -> None:
    """Answer before the app (and its exception handlers) sees the request."""
    from starlette.responses import JSONResponse

    headers = {**(exc.headers or {}), "Connection": "close"}
    await JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)(scope, receive, send)


def require_json(request: Request) -> None:
    """415 unless the request says its body is JSON (``application/json`` or ``application/*+json``)."""
    value = request.headers.get("content-type")
    media = (value or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return
    got = f"Content-Type {value[:80]!r}" if value else "no Content-Type"
    raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"this endpoint takes JSON and got {got}: {_SEND_JSON}")


#: A route parameter that refuses a body not declared as JSON with 415; declared after the key's
#: parameter, so a request without a key is a 401 whatever it sends.
JsonContent = Annotated[None, Depends(require_json)]


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; 413 over ``limit`` bytes (compressed or not), 400/415 when unreadable."""
    require_json(request)
    body = await read_body(request, limit)
    try:
        return loads(body)
    except WireError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is {exc}") from None


async def read_body(request: Request, limit: int) -> bytes | bytearray:
    """The body's bytes, gunzipped (every member, or 400); 413 over ``limit`` bytes (compressed or
    not), 415 for an unknown Content-Encoding."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "", "gzip"):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Encoding {encoding[:40]!r}; use gzip")
    raw = bytearray()
    try:
        async for chunk in request.stream():
            raw += chunk
    except ClientDisconnect:
        # the client is gone (a killed pod, a timeout): nobody reads the answer, but it is not
        # a server error; 499 as nginx logs it
        raise HTTPException(CLIENT_CLOSED_REQUEST, "the client closed the connection before sending the whole body") from None
    if len(raw) > limit:  # without BodyLimits in front (an app mounted elsewhere)
        raise too_large(limit)
    if encoding != "gzip":
        return raw
    lease: Lease | None = getattr(request.state, _LEASE_KEY, None)
    try:
        body = gunzip(raw, limit, None if lease is None else lease.take)
    except LimitExceeded:
        raise too_large(limit) from None
    except WireError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is {exc}") from None
    if lease is not None:  # the compressed bytes are dropped now
        lease.give(len(raw))
    return body
