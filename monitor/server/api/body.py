"""Reading request bodies: the size limit while streaming, Content-Encoding, then the shared decoding
(:mod:`monitor.server.services.payload`, which the broker consumers use too)."""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request, status
from starlette.requests import ClientDisconnect

from monitor.errors import LimitExceeded, WireError
from monitor.server.services.payload import decode_body

#: nginx's status for a request whose client hung up before the answer.
CLIENT_CLOSED_REQUEST = 499


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; 413 over ``limit`` bytes (compressed or not), 400/415 when unreadable."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        # the client is gone (a killed pod, a timeout): nobody reads the answer, but it is not
        # a server error; 499 as nginx logs it
        raise HTTPException(CLIENT_CLOSED_REQUEST, "the client closed the connection before sending the whole body") from None
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("gzip", "identity", ""):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Encoding {encoding!r}; use gzip")
    try:
        return decode_body(raw, gzipped=encoding == "gzip", limit=limit)
    except LimitExceeded:
        raise _too_large(limit) from None
    except WireError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is {exc}") from None


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body is over the limit of {limit} bytes (CVMON_MAX_BODY_BYTES); send smaller batches",
    )
