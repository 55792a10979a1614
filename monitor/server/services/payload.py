"""Decoding a batch body: bounded gunzip and JSON, the same for HTTP requests and broker messages.

The size limit (``max_body_bytes``) holds after decompression, so a small gzip bomb never expands
past it in memory. Strict JSON (orjson) first; Python's ``json.dumps`` writes NaN and Infinity,
which strict JSON refuses, so those bodies are parsed on a slow path and the record holding one
is rejected by itself, not the whole batch.
"""

from __future__ import annotations

import json
import zlib
from typing import Any, Final

import orjson

from monitor.errors import LimitExceeded, WireError

#: The first bytes of every gzip stream; JSON text can never start with them.
GZIP_MAGIC: Final = b"\x1f\x8b"


def is_gzip(raw: bytes) -> bool:
    return raw[:2] == GZIP_MAGIC


def gunzip(raw: bytes, limit: int) -> bytes:
    """The decompressed bytes; :class:`LimitExceeded` past ``limit``, :class:`WireError` when not gzip."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error:
        raise WireError("not valid gzip") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise LimitExceeded(f"over the limit of {limit} bytes once decompressed (CVMON_MAX_BODY_BYTES)")
    if not inflater.eof:
        raise WireError("not valid gzip (truncated)")
    return out


def loads(raw: bytes) -> Any:
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
