"""A bounded on-disk queue of request bodies, for while the server is unreachable.

Layout::

    <root>/                               e.g. ~/.cache/cvmon/spool/<model>
        <host>-<pid>-<random>/            one directory per live client process
            lock                          flock()ed by its owner for as long as it lives
            000000000042-p-500.gz         one batch: sequence, kind (p: predictions,
                                          g: ground truth, s: samples), record count; the gzip
                                          body as sent

Why a directory per process rather than one shared directory: forked web workers (gunicorn,
uvicorn --workers) all log for the same model, and each must be able to spool at once without
two of them replaying the same batch. A process owns its directory through an exclusive
``flock``, which the kernel releases when the process dies in any way (SIGKILL included). A
client adopts every directory whose lock it can take — its owner is dead — by renaming the
files into its own directory, in order, and replays them first. (A forked child closes the
inherited lock descriptor and makes its own directory; the parent keeps its lock.)

A batch counts as spooled only once durable: written to a temporary file, fsync'ed, renamed to
its final name and the directory fsync'ed. Over ``max_bytes`` or ``max_records`` the oldest
batches are deleted and their records counted as dropped; appending never blocks on anything
but the local disk.
"""

from __future__ import annotations

import collections
import fcntl
import logging
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("monitor.sdk")

_NAME = re.compile(r"(\d{12})-([pgs])-(\d+)\.gz")
_LOCK = "lock"


@dataclass(frozen=True, slots=True)
class Batch:
    """A request body ready to send: which endpoint (``kind``), the gzip body, its record count."""

    kind: str
    body: bytes
    records: int


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    kind: str
    records: int
    size: int

    @property
    def name(self) -> str:
        return f"{self.seq:012d}-{self.kind}-{self.records}.gz"


class Spool:
    """The spool of one client process. Thread-safe; every method may raise :class:`OSError`."""

    def __init__(self, root: Path, *, max_bytes: int, max_records: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_records = max_records
        self._lock = threading.Lock()
        self._entries: collections.deque[Entry] = collections.deque()
        self._bytes = 0
        self._records = 0
        self._seq = 0
        self._dir: Path | None = None
        self._lock_fd: int | None = None

    # -- state

    @property
    def pending(self) -> int:
        """Batches waiting on disk."""
        return len(self._entries)

    @property
    def records(self) -> int:
        return self._records

    @property
    def bytes(self) -> int:
        return self._bytes

    # -- life cycle

    def open(self) -> tuple[int, int]:
        """Make and lock this process's directory, then adopt orphaned ones. Returns the records
        adopted and the records dropped to keep the adopted ones within the limits."""
        with self._lock:
            if self._dir is None:
                self._dir, self._lock_fd = self._make_own_dir()
            return self._adopt()

    def _make_own_dir(self) -> tuple[Path, int]:
        self.root.mkdir(parents=True, exist_ok=True)
        name = f"{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(4)}"
        # Built under a dot-name and renamed once locked, so an adopter never sees it unlocked.
        staging = self.root / f".{name}"
        staging.mkdir()
        fd = os.open(staging / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        final = self.root / name
        staging.rename(final)
        return final, fd

    def adopt(self) -> tuple[int, int]:
        """Adopt the directories of dead processes: ``(records adopted, records dropped)``."""
        with self._lock:
            return self._adopt() if self._dir is not None else (0, 0)

    def _adopt(self) -> tuple[int, int]:
        assert self._dir is not None
        adopted = 0
        for sub in sorted(self.root.iterdir(), key=_mtime):
            if sub == self._dir or sub.name.startswith(".") or not sub.is_dir():
                continue
            try:
                fd = os.open(sub / _LOCK, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)  # its owner is alive
                continue
            try:
                adopted += self._move_from(sub)
            except FileNotFoundError:
                pass  # another process adopted it between our open() and flock()
            finally:
                os.close(fd)
        dropped = 0
        while self._entries and (self._bytes > self.max_bytes or self._records > self.max_records):
            dropped += self._remove(self._entries[0])
        return adopted, dropped

    def _move_from(self, sub: Path) -> int:
        assert self._dir is not None
        found = []
        for path in sub.iterdir():
            match = _NAME.fullmatch(path.name)
            if match:
                found.append((int(match[1]), match[2], int(match[3]), path))
            elif path.name != _LOCK:
                path.unlink(missing_ok=True)  # a write that never completed
        moved = 0
        for _, kind, records, path in sorted(found):
            entry = self._next_entry(kind, records, path.stat().st_size)
            path.rename(self._dir / entry.name)
            self._push(entry)
            moved += records
        _fsync_dir(self._dir)
        (sub / _LOCK).unlink(missing_ok=True)
        sub.rmdir()
        if moved:
            log.info("cvmon: adopted %d spooled records of a previous process from %s", moved, sub)
        return moved

    def close(self) -> None:
        """Release the directory; remove it when empty (otherwise the next process adopts it)."""
        with self._lock:
            if self._dir is None or self._lock_fd is None:
                return
            if not self._entries:
                (self._dir / _LOCK).unlink(missing_ok=True)
                self._dir.rmdir()
            os.close(self._lock_fd)
            self._dir = self._lock_fd = None

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's directory without touching it (the parent still
        holds the lock through its own descriptor)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
        self._dir = self._lock_fd = None
        self._entries.clear()

    # -- queue operations

    def append(self, batch: Batch) -> int:
        """Store ``batch`` durably. Returns the number of records dropped to make room (the oldest
        batches, or ``batch`` itself when it alone is over a limit)."""
        if batch.records > self.max_records or len(batch.body) > self.max_bytes:
            return batch.records
        with self._lock:
            if self._dir is None:
                raise OSError("the spool is not open")
            dropped = 0
            while self._entries and (
                self._bytes + len(batch.body) > self.max_bytes or self._records + batch.records > self.max_records
            ):
                dropped += self._remove(self._entries[0])
            entry = self._next_entry(batch.kind, batch.records, len(batch.body))
            tmp = self._dir / f".{entry.name}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(batch.body)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            tmp.rename(self._dir / entry.name)
            _fsync_dir(self._dir)
            self._push(entry)
            return dropped

    def oldest(self) -> tuple[Entry, Batch] | None:
        with self._lock:
            if not self._entries or self._dir is None:
                return None
            entry = self._entries[0]
            body = (self._dir / entry.name).read_bytes()
            return entry, Batch(entry.kind, body, entry.records)

    def remove(self, entry: Entry) -> None:
        with self._lock:
            if self._entries and self._entries[0] == entry:
                self._remove(entry)

    def _remove(self, entry: Entry) -> int:
        assert self._dir is not None
        self._entries.popleft()
        self._bytes -= entry.size
        self._records -= entry.records
        (self._dir / entry.name).unlink(missing_ok=True)
        return entry.records

    def _next_entry(self, kind: str, records: int, size: int) -> Entry:
        self._seq += 1
        return Entry(self._seq, kind, records, size)

    def _push(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._bytes += entry.size
        self._records += entry.records


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
