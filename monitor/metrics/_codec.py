"""Bytes for mergeable states, and exact fixed-point sums.

A state is stored as::

    b"CVMS" | format version (u16 LE) | header length (u32 LE) | header (JSON) | array buffers

The JSON header names the state kind, its scalar fields and, for each array, its name, dtype
(always little-endian) and shape; the buffers follow in that order. No pickle: reading a state
never runs code, and a state written on one machine reads on any other.

Sums of confidences are kept as integers in units of 2⁻⁶³ (``floor(value · 2⁶³)`` per sample),
so adding states is exact and associative: the merge of an hour's parts reduces to exactly the
numbers of the whole hour, whatever the order. Kernels accumulate each value as two 32-bit limbs
in int64 (``hi = floor(v·2³¹)``, ``lo = floor(frac(v·2³¹)·2³²)``); with at most 2³¹ values per
kernel call neither limb can overflow. Here the limbs become Python integers, stored as three
64-bit words.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

MAGIC: Final = b"CVMS"
FORMAT_VERSION: Final = 1
#: Fixed-point scale of exact sums: a sum ``s`` stands for ``s / 2**FIXED_BITS``.
FIXED_BITS: Final = 63
#: Most rows a kernel may accumulate in one call before its int64 limbs could overflow.
MAX_ROWS_PER_CALL: Final = 1 << 30

_PREFIX = struct.Struct("<4sHI")
_ALLOWED_DTYPES: Final = frozenset({"<i8", "<i4", "<u8", "<f8", "<f4", "|b1", "|u1"})


def pack(kind: str, meta: Mapping[str, Any], arrays: Mapping[str, NDArray[Any]]) -> bytes:
    """Serialise a state: ``meta`` holds JSON scalars, ``arrays`` numeric numpy arrays."""
    buffers: list[bytes] = []
    specs: list[list[Any]] = []
    for name, array in arrays.items():
        arr = np.ascontiguousarray(array)
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and not np.little_endian):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        dtype = arr.dtype.str
        if dtype not in _ALLOWED_DTYPES:
            raise TypeError(f"array {name!r} has dtype {dtype}, which a state cannot store")
        specs.append([name, dtype, list(arr.shape)])
        buffers.append(arr.tobytes())
    header = json.dumps({"kind": kind, "meta": dict(meta), "arrays": specs}, separators=(",", ":"))
    head = header.encode("utf-8")
    return b"".join([_PREFIX.pack(MAGIC, FORMAT_VERSION, len(head)), head, *buffers])


def unpack(data: bytes, kind: str, required: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, NDArray[Any]]]:
    """Read what :func:`pack` wrote; raises ``ValueError`` on anything else.

    ``required`` names arrays the caller needs; a state without one of them is refused here
    rather than failing later with a ``KeyError``.
    """
    view = memoryview(data)
    if len(view) < _PREFIX.size:
        raise ValueError("not a cvmon metrics state: too short")
    magic, version, head_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise ValueError("not a cvmon metrics state: bad magic bytes")
    if version != FORMAT_VERSION:
        raise ValueError(f"metrics state format {version} is not supported (this cvmon reads {FORMAT_VERSION})")
    start = _PREFIX.size + head_len
    try:
        header = json.loads(bytes(view[_PREFIX.size : start]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("metrics state header is corrupt") from None
    if not isinstance(header, dict) or header.get("kind") != kind:
        got = header.get("kind") if isinstance(header, dict) else None
        raise ValueError(f"expected a {kind} state, got {got!r}")
    arrays: dict[str, NDArray[Any]] = {}
    offset = start
    specs = header.get("arrays")
    if not isinstance(specs, list) or not isinstance(header.get("meta"), dict):
        raise ValueError("metrics state header is corrupt")
    for spec in specs:
        try:
            name, dtype, shape = spec
            shape = [int(d) for d in shape]
        except (TypeError, ValueError):
            raise ValueError("metrics state header is corrupt") from None
        if dtype not in _ALLOWED_DTYPES or min(shape, default=0) < 0:
            raise ValueError(f"metrics state array {name!r} has unsupported dtype or shape")
        dt = np.dtype(dtype)
        count = math.prod(shape)  # Python ints: exact, and np.prod cost a tenth of loading states
        end = offset + count * dt.itemsize
        if end > len(view):
            raise ValueError("metrics state is truncated")
        arrays[name] = np.frombuffer(view[offset:end], dtype=dt).reshape(shape)
        offset = end
    if offset != len(view):
        raise ValueError("metrics state has trailing bytes")
    missing = sorted(set(required) - set(arrays))
    if missing:
        raise ValueError(f"{kind} state lacks {', '.join(missing)}")
    return header["meta"], arrays


def fixed_from_limbs(hi: NDArray[np.int64], lo: NDArray[np.int64]) -> NDArray[Any]:
    """Exact sums (Python ints, object array) from the kernels' two int64 limbs."""
    return hi.astype(object) * (1 << 32) + lo.astype(object)  # type: ignore[no-any-return]


def fixed_zeros(shape: int | tuple[int, ...]) -> NDArray[Any]:
    """An object array of exact zero sums."""
    out = np.empty(shape, dtype=object)
    out.fill(0)
    return out


def fixed_to_words(sums: NDArray[Any]) -> NDArray[np.uint64]:
    """Exact sums as three little-endian 64-bit words each (``shape + (3,)``)."""
    values = sums.reshape(-1).tolist()
    if values and not (min(values) >= 0 and max(values) < 1 << 192):
        raise OverflowError("an exact sum is out of the storable range")
    # each value's 24 little-endian bytes are its three words in order: one conversion per value
    # (masking and shifting out each word cost 2.5 times more; a row assignment per value, 25)
    words = np.frombuffer(b"".join([v.to_bytes(24, "little") for v in values]), dtype="<u8")
    return words.astype(np.uint64).reshape((*sums.shape, 3))


def fixed_from_words(words: NDArray[np.uint64]) -> NDArray[Any]:
    """Inverse of :func:`fixed_to_words`."""
    w = words.astype(object)
    return w[..., 0] + (w[..., 1] << 64) + (w[..., 2] << 128)  # type: ignore[no-any-return]


def fixed_mean(total: int, count: int) -> float:
    """``total / 2**FIXED_BITS / count``, correctly rounded (Python int division is exact)."""
    return total / (count << FIXED_BITS)


def add_arrays(arrays: Sequence[NDArray[Any]]) -> NDArray[Any]:
    """Elementwise sum of same-shaped arrays (int64 counts or exact object sums), read-only."""
    if len(arrays) == 1:
        return readonly(arrays[0].copy())
    total = arrays[0] + arrays[1]  # a new array: no copy of the first
    for a in arrays[2:]:
        total = total + a
    return readonly(total)


def readonly(array: NDArray[Any]) -> NDArray[Any]:
    """The array, flagged read-only so a frozen state cannot be changed through it."""
    array.setflags(write=False)
    return array
