"""Reading request bodies: size limit (before and after gunzip), gzip, fast JSON."""

from __future__ import annotations

import json
import zlib
from typing import Any

import orjson
from fastapi import HTTPException, Request, status
from starlette.requests import ClientDisconnect

#: nginx's status for a request whose client hung up before the answer.
CLIENT_CLOSED_REQUEST = 499


async def read_json(request: Request, limit: int) -> Any:
    """The parsed JSON body; 413 over ``limit`` bytes (compressed or not), 400/415 when unreadable."""
    raw = await read_body(request, limit)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = exc
    # Python's json.dumps writes NaN and Infinity, which strict JSON (orjson) refuses. Parse them
    # on this slow path so the record holding one is rejected by itself, not the whole batch.
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"body is not valid JSON: {error}") from None


async def read_body(request: Request, limit: int) -> bytes:
    """The body's bytes, gunzipped; 413 over ``limit`` bytes (compressed or not), 415 for an
    unknown Content-Encoding."""
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
    if encoding == "gzip":
        raw = _gunzip(raw, limit)
    elif encoding not in ("identity", ""):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, f"unsupported Content-Encoding {encoding!r}; use gzip")
    return raw


def _gunzip(raw: bytes, limit: int) -> bytes:
    # Bounded decompression: a small gzip bomb must not expand past the body limit in memory.
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "body is not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise _too_large(limit)
    return out


def _too_large(limit: int) -> HTTPException:
    return HTTPException(
        status.HTTP_413_CONTENT_TOO_LARGE,
        f"request body is over the limit of {limit} bytes (CVMON_MAX_BODY_BYTES); send smaller batches",
    )
