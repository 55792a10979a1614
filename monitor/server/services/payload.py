"""Decoding a batch body: bounded gunzip and JSON, the same for HTTP requests and broker messages.

The size limit (``max_body_bytes``) holds after decompression, so a small gzip bomb never expands
past it in memory, and every gzip member is decoded (or the body refused), never only the first. Strict JSON (orjson) first; Python's ``json.dumps`` writes NaN and Infinity,
which strict JSON refuses, so those bodies are parsed on a slow path and the record holding one
is rejected by itself, not the whole batch.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable
from typing import Any, Final

import orjson

from monitor.errors import LimitExceeded, WireError

#: The first bytes of every gzip stream; JSON text can never start with them.
GZIP_MAGIC: Final = b"\x1f\x8b"


def is_gzip(raw: bytes) -> bool:
    return raw[:2] == GZIP_MAGIC


def gunzip(raw: bytes | bytearray, limit: int, hold: Callable[[int], None] | None = None) -> bytes:
    """Every member of a gzip stream (RFC 1952 allows several, one after another), at most
    ``limit`` bytes in all; ``hold`` is told of the output as it grows (a memory budget).

    :class:`LimitExceeded` past ``limit``; :class:`WireError` when it is not gzip, ends inside a
    member, or has bytes after the last member that do not start another: a body is decoded whole
    or not at all, never cut to its first member.
    """
    parts: list[bytes] = []
    size = 0
    rest = memoryview(raw)
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out = inflater.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise WireError(f"not valid gzip ({exc})") from None
        size += len(out)
        if size > limit or inflater.unconsumed_tail:
            raise LimitExceeded(f"over the limit of {limit} bytes once decompressed (CVMON_MAX_BODY_BYTES)")
        if hold is not None:
            hold(len(out))
        parts.append(out)
        if not inflater.eof:
            raise WireError("not valid gzip (truncated: the stream ends inside a member)")
        tail = inflater.unused_data
        if not tail:
            break
        if tail[:2] != GZIP_MAGIC:
            raise WireError(f"not valid gzip ({len(tail)} bytes after its last member that do not start another)")
        rest = memoryview(tail)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def loads(raw: bytes | bytearray) -> Any:
    """Parsed JSON, or :class:`WireError` saying why not."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise WireError(f"not valid JSON: {error}") from None


def decode_body(raw: bytes, *, gzipped: bool, limit: int) -> Any:
    """The JSON value of a body, gunzipped first when ``gzipped``.

    Raises :class:`LimitExceeded` when the body is over ``limit`` bytes (before or after
    decompression) and :class:`WireError` when it is not gzip or not JSON.
    """
    if len(raw) > limit:
        raise LimitExceeded(f"over the limit of {limit} bytes (CVMON_MAX_BODY_BYTES)")
    return loads(gunzip(raw, limit) if gzipped else raw)
