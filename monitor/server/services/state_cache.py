"""Decoded hour states kept between runs of the evaluate job, in the memory of one process.

Every run that changes an hour re-reduces the windows that contain it, and the rolling 7d window
contains a week of hours: without a cache each run (every 60 s) fetches and decodes a week of
``eval_states`` (tens of MB for a busy detection model), almost all of it unchanged
since the previous run. The cache keeps each hour's slice states, merged over their parts, under
the *versions* of the rows they came from: (slice, part, computed_at) of every ``eval_states``
row of the hour. A reader fetches those versions (a few columns, no states) and uses an entry
only when they are exactly the rows stored now; anything else (another process recomputed the
hour, retention deleted it, a part was added or folded) is a miss, and the hour is read from the
database again. ``computed_at`` tells two writes of the same (slice, part) apart because writers
of one model's states are serialised by the (job, model) lock, and each write takes longer than
the timestamp's microsecond.

The job puts what it has just written (an hour it recomputed; an hour whose old states were
cached, merged with the part it added), so the next run finds it without reading it back.
Entries are evicted least recently used beyond ``eval_state_cache_mb``; 0 turns the cache off.
The cache belongs to whoever runs the jobs (:class:`monitor.server.jobs.Worker`): one per
process and database, never a module global.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any

import numpy as np

from monitor.server.services.states import SliceKey, SliceState

#: One ``eval_states`` row: (slice, part, computed_at).
RowVersion = tuple[SliceKey, int, datetime]
#: Bytes counted per element of an object array (exact sums are Python ints of about 3 words).
_OBJECT_ELEMENT_BYTES = 48


class HourStateCache:
    """Slice states per (model, hour), valid for one exact set of stored row versions.

    Thread-safe: the scheduler runs the jobs of different models in parallel threads.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, datetime], tuple[frozenset[RowVersion], dict[SliceKey, SliceState], int]]
        self._entries = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def bytes(self) -> int:
        """Approximate memory held by the cached states."""
        return self._bytes

    def get(self, model: str, hour: datetime, versions: frozenset[RowVersion]) -> dict[SliceKey, SliceState] | None:
        """The states of ``hour`` if they were cached from exactly these rows, else None."""
        with self._lock:
            entry = self._entries.get((model, hour))
            if entry is None or entry[0] != versions:
                return None
            self._entries.move_to_end((model, hour))
            return entry[1]

    def put(self, model: str, hour: datetime, versions: Iterable[RowVersion], states: dict[SliceKey, SliceState]) -> None:
        """Remember the states of ``hour`` as merged from the rows ``versions``."""
        size = sum(state_bytes(s) for s in states.values())
        with self._lock:
            self._drop((model, hour))
            if size > self.max_bytes:
                return
            self._entries[(model, hour)] = (frozenset(versions), states, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str, datetime]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]


def state_bytes(state: Any) -> int:
    """Approximate memory of a state: its arrays' buffers, recursively through its sub-states."""
    if isinstance(state, np.ndarray):
        return state.size * _OBJECT_ELEMENT_BYTES if state.dtype == object else state.nbytes
    kind = type(state)
    names = _FIELD_NAMES.get(kind)
    if names is None:  # looked up once per type: dataclasses.fields per state was most of the cost
        names = _FIELD_NAMES[kind] = tuple(f.name for f in fields(kind)) if is_dataclass(kind) else ()
    return sum(state_bytes(getattr(state, name)) for name in names) if names else 0


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
