"""The background sender: batch, gzip, send, retry, spool, replay.

One daemon thread per client process. It takes records off the client's queue and ships a
batch when it holds ``batch_size`` records or its oldest record has waited ``flush_interval``
seconds. Delivery of a fresh batch is retried with exponential backoff and jitter (honouring
``Retry-After``) for at most ``retry_deadline`` seconds; then the batch goes to the spool, and
while anything is spooled every new batch goes behind it, so records reach the server in the
order they were logged. The oldest spooled batch is retried on the backoff schedule; once one
gets through, the spool drains batch after batch, interleaved with new traffic.

How answers are treated:

==========================  ================================================================
200 (some rejected)         delivered; rejected records are bad data: counted, logged, never
                            retried
422, 400                    every record rejected: counted, logged, not retried
413                         split in halves and resent (a single record that is too large is
                            rejected)
401, 403, 404               a configuration error (key, scope, URL): logged as an error,
                            the data kept (spooled) and retried with backoff
429, 5xx, no answer         retried with backoff, then spooled
==========================  ================================================================

Records carry client-made prediction ids and the server ignores duplicates, so sending a batch
again after a lost acknowledgement (or replaying a spool file whose deletion a crash
interrupted) never stores a record twice: at-least-once delivery is exactly-once in the
database.
"""

from __future__ import annotations

import gzip
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from monitor import __version__
from monitor.sdk._records import PATHS, SAMPLE, encode, encode_sample
from monitor.sdk._spool import Batch, Spool
from monitor.sdk._transport import Response, Transport

log = logging.getLogger("monitor.sdk")

_DONE: Final = "done"
_RETRY: Final = "retry"
_SPLIT: Final = "split"
#: The server's per-request record limit (monitor.server.services.ingest.MAX_RECORDS).
MAX_BATCH_RECORDS: Final = 10_000
#: The longest Retry-After honoured, whatever the server asks.
_MAX_RETRY_AFTER: Final = 300.0


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    model: str
    version: str
    api_key: str | None
    batch_size: int
    max_batch_bytes: int
    flush_interval: float
    retry_deadline: float
    backoff_base: float
    backoff_max: float
    embedding_dtype: str
    sample_max_side: int = 0
    sample_max_bytes: int = 0
    adopt_interval: float = 60.0


class Counters:
    """Cumulative counts behind :meth:`Client.stats`."""

    __slots__ = ("_lock", "dropped", "rejected", "retried", "sent", "spooled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.sent = self.retried = self.spooled = self.dropped = self.rejected = 0

    def add(self, name: str, n: int) -> None:
        if n:
            with self._lock:
                setattr(self, name, getattr(self, name) + n)


class Flush:
    """Queue marker: ship what is queued before it and drain the spool, retrying until
    ``deadline`` (monotonic), then set ``done``."""

    __slots__ = ("deadline", "done", "ok")

    def __init__(self, deadline: float) -> None:
        self.done = threading.Event()
        self.ok = False
        self.deadline = deadline


class Stop(Flush):
    """Queue marker: like :class:`Flush` without waiting out failed attempts, then end the thread."""

    __slots__ = ()


class _Warnings:
    """Log each kind of problem at most once a minute: a down server must not flood the logs."""

    def __init__(self, every: float = 60.0) -> None:
        self._every = every
        self._last: dict[str, float] = {}

    def __call__(self, key: str, level: int, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -self._every) >= self._every:
            self._last[key] = now
            log.log(level, message, *args)


class Sender(threading.Thread):
    def __init__(
        self,
        source: queue.SimpleQueue[Any],
        transport: Transport,
        spool: Spool,
        options: Options,
        counters: Counters,
    ) -> None:
        super().__init__(name=f"cvmon-sender-{options.model}", daemon=True)
        self._queue = source
        self._transport = transport
        self._spool = spool
        self._o = options
        self._counters = counters
        self._warn = _Warnings()
        self._headers = {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "User-Agent": f"cvmon-sdk/{__version__}",
        }
        if options.api_key:
            self._headers["Authorization"] = f"Bearer {options.api_key}"
        #: Interrupts backoff sleeps when the client is closing and out of time.
        self.stopping = threading.Event()
        self._open: list[tuple[str, dict[str, Any]]] = []
        #: Encoded batches of the open batch not yet delivered or spooled (the first in flight).
        self._outbox: list[Batch] = []
        self._failures = 0
        self._next_try = 0.0
        self._retry_after: float | None = None
        self._spool_usable = True

    # ---------------------------------------------------------------------------------------
    # the loop

    def run(self) -> None:
        self._open_spool()
        next_adopt = time.monotonic() + self._o.adopt_interval
        due = 0.0
        while True:
            now = time.monotonic()
            waits = []
            if self._open:
                waits.append(due - now)
            if self._spool.pending:
                waits.append(self._next_try - now)
            try:
                item = self._queue.get(timeout=max(0.0, min(waits)) if waits else None)
            except queue.Empty:
                item = None
            try:
                if type(item) is tuple:
                    if not self._open:
                        due = time.monotonic() + self._o.flush_interval
                    self._open.append(item)
                elif isinstance(item, Flush):
                    if self._marker(item):
                        return
                    continue
                now = time.monotonic()
                if self._open and (len(self._open) >= self._o.batch_size or now >= due):
                    self._ship_open(now + self._o.retry_deadline)
                if self._spool.pending and time.monotonic() >= self._next_try:
                    self._drain_one()
                if now >= next_adopt:
                    next_adopt = now + self._o.adopt_interval
                    self._adopt()
            except Exception:  # the sender must outlive any bug, or logging stops silently
                log.exception("cvmon: unexpected error in the sender thread; %d records lost", len(self._open))
                self._counters.add("dropped", len(self._open))
                self._open = []

    def _marker(self, marker: Flush) -> bool:
        """Handle a flush or stop marker; True when the thread must end."""
        stop = isinstance(marker, Stop)
        deadline = marker.deadline
        try:
            was_pending, dropped = self._spool.pending, self._counters.dropped
            shipped = self._ship_open(min(deadline, time.monotonic() + self._o.retry_deadline))
            # Spooled behind earlier batches (to keep their order) is not a failed attempt: drain
            # them. A flush also waits out a failed attempt's backoff (Retry-After included) until
            # its deadline; closing does not, what is left stays spooled for the next process.
            ok = shipped or was_pending or not stop
            while ok and self._spool.pending and time.monotonic() < deadline:
                ok = self._drain_one()
                if not ok and not stop:
                    wait = min(self._next_try, deadline) - time.monotonic()
                    ok = wait > 0 and not self.stopping.wait(wait)
            marker.ok = not self._spool.pending and self._counters.dropped == dropped
        finally:
            if stop:
                self._close()
            marker.done.set()
        return stop

    def _close(self) -> None:
        try:
            self._spool.close()
        except OSError as exc:
            log.warning("cvmon: could not release the spool directory: %s", exc)
        self._transport.close()

    # ---------------------------------------------------------------------------------------
    # batches

    def _ship_open(self, deadline: float) -> bool:
        """Send (or spool) the open batch; True when all of it reached the server."""
        items, self._open = self._open, []
        self._outbox = list(self._encode(items))
        ok = True
        while self._outbox:
            batch = self._outbox[0]
            if self._spool.pending:
                self._to_spool(batch)
                ok = False
            elif rest := self._deliver(batch, deadline):
                ok = False
                self._failed()
                for part in rest:
                    self._to_spool(part)
            self._outbox.pop(0)
        return ok

    def _encode(self, items: list[tuple[str, dict[str, Any]]]) -> Iterator[Batch]:
        """Gzip bodies grouped by endpoint, each within batch_size records and max_batch_bytes."""
        for kind in dict.fromkeys(k for k, _ in items):  # in order of first appearance
            parts: list[bytes] = []
            size = 0
            for k, record in items:
                if k != kind:
                    continue
                try:
                    if kind == SAMPLE:
                        part = encode_sample(record, self._o.model, self._o.sample_max_side, self._o.sample_max_bytes)
                    else:
                        part = encode(record, self._o.model, self._o.version if kind == "p" else None, self._o.embedding_dtype)
                except (TypeError, ValueError, ImportError, OSError) as exc:  # OSError: an image Pillow cannot read
                    self._counters.add("rejected", 1)
                    self._warn("encode", logging.WARNING, "cvmon: record %s not sent: %s", record.get("prediction_id"), exc)
                    continue
                if parts and (size + len(part) > self._o.max_batch_bytes or len(parts) >= self._o.batch_size):
                    yield _batch(kind, parts)
                    parts, size = [], 0
                parts.append(part)
                size += len(part) + 1
            if parts:
                yield _batch(kind, parts)

    def _deliver(self, batch: Batch, deadline: float) -> list[Batch]:
        """Send with retries until ``deadline``; returns what could not be delivered."""
        attempt = 0
        while True:
            verdict = self._post(batch)
            if verdict == _DONE:
                return []
            if verdict == _SPLIT:
                if batch.records == 1:
                    self._counters.add("rejected", 1)
                    self._warn("413", logging.WARNING, "cvmon: a record is larger than the server's body limit; dropped")
                    return []
                rest: list[Batch] = []
                for half in _split(batch):
                    rest += self._deliver(half, deadline)
                return rest
            attempt += 1
            delay = self._backoff(attempt)
            if self.stopping.is_set() or time.monotonic() + delay > deadline:
                return [batch]
            self._counters.add("retried", batch.records)
            self.stopping.wait(delay)

    def _post(self, batch: Batch) -> str:
        self._retry_after = None
        path = PATHS[batch.kind]
        try:
            answer = self._transport.post(path, batch.body, self._headers)
        except OSError as exc:
            self._warn("down", logging.WARNING, "cvmon at %s is unreachable (%s); retrying, spooling meanwhile", self._o.url, exc)
            return _RETRY
        except Exception as exc:
            self._warn("transport", logging.ERROR, "cvmon: the transport failed: %r", exc)
            return _RETRY
        status = answer.status
        if 200 <= status < 300 or status in (400, 422):
            self._count_answer(batch, answer)
            return _DONE
        if status == 413:
            return _SPLIT
        if status in (401, 403, 404):
            self._warn(
                "config", logging.ERROR,
                "cvmon: %s%s answered %d (%s): check the URL, the API key and its scopes/models. "
                "Records are kept in the spool and retried.",
                self._o.url, path, status, _detail(answer),
            )  # fmt: skip
        else:
            self._warn("status", logging.WARNING, "cvmon: %s answered %d (%s); retrying", path, status, _detail(answer))
        self._retry_after = _retry_after(answer)
        return _RETRY

    def _count_answer(self, batch: Batch, answer: Response) -> None:
        try:
            body = json.loads(answer.body)
            accepted, duplicates = int(body["accepted"]), int(body["duplicates"])
            rejected = list(body["rejected"])
        except (ValueError, KeyError, TypeError):
            # 400, or 422 for the batch as a whole ({"detail": ...}): nothing was stored.
            accepted = duplicates = 0
            rejected = [{"index": None, "error": _detail(answer)}]
            if 200 <= answer.status < 300:
                accepted = batch.records
        self._counters.add("sent", accepted + duplicates)
        n_rejected = batch.records - accepted - duplicates
        self._counters.add("rejected", n_rejected)
        if rejected and n_rejected:
            first = rejected[0]
            self._warn(
                "rejected:" + str(first.get("error"))[:40], logging.WARNING,
                "cvmon rejected %d of %d records; first: record %s: %s",
                n_rejected, batch.records, first.get("index"), first.get("error"),
            )  # fmt: skip

    # ---------------------------------------------------------------------------------------
    # spool

    def _open_spool(self) -> None:
        try:
            _, dropped = self._spool.open()
        except OSError as exc:
            self._spool_usable = False
            log.warning("cvmon: spool directory %s is unusable (%s); undeliverable records will be dropped", self._spool.root, exc)
            return
        self._counters.add("dropped", dropped)

    def _adopt(self) -> None:
        if self._spool_usable:
            try:
                self._counters.add("dropped", self._spool.adopt()[1])
            except OSError as exc:
                self._warn("adopt", logging.WARNING, "cvmon: could not adopt spool directories: %s", exc)

    def _to_spool(self, batch: Batch) -> None:
        try:
            if not self._spool_usable:
                raise OSError("spool unusable")
            dropped = self._spool.append(batch)
        except OSError as exc:
            self._counters.add("dropped", batch.records)
            self._warn("spool", logging.WARNING, "cvmon: could not spool %d records, dropped: %s", batch.records, exc)
            return
        self._counters.add("spooled", batch.records)
        if dropped:
            self._counters.add("dropped", dropped)
            self._warn("full", logging.WARNING, "cvmon: the spool is full; dropped the oldest %d records", dropped)

    def _drain_one(self) -> bool:
        """Try the oldest spooled batch once; True when it went through."""
        try:
            found = self._spool.oldest()
        except OSError as exc:
            self._warn("read", logging.WARNING, "cvmon: cannot read the spool: %s", exc)
            self._failed()
            return False
        if found is None:
            return True
        entry, batch = found
        self._counters.add("retried", batch.records)
        if self._deliver(batch, deadline=0.0):
            self._failed()
            return False
        self._failures = 0
        self._spool.remove(entry)
        return True

    def _failed(self) -> None:
        self._failures += 1
        self._next_try = time.monotonic() + self._backoff(self._failures)

    def _backoff(self, attempt: int) -> float:
        delay = min(self._o.backoff_max, self._o.backoff_base * 2.0 ** min(attempt - 1, 30))
        delay *= random.uniform(0.5, 1.0)  # jitter: clients that failed together retry apart
        if self._retry_after is not None:
            delay = max(delay, self._retry_after)
        return delay

    # ---------------------------------------------------------------------------------------
    # called from the closing thread when this one is stuck

    def abandon(self, drain: Callable[[], list[tuple[str, dict[str, Any]]]]) -> None:
        """Spool the records this thread holds and those still queued, from the calling thread,
        then release the spool so that the next process adopts it. (Should the stuck request
        still succeed, its records are stored once: the replay is a duplicate.)"""
        batches = [*self._outbox, *self._encode(self._open + drain())]
        for batch in batches:
            self._to_spool(batch)
        self._close()


def _batch(kind: str, parts: list[bytes]) -> Batch:
    body = b'{"records":[' + b",".join(parts) + b"]}"
    return Batch(kind, gzip.compress(body, compresslevel=1, mtime=0), len(parts))


def _split(batch: Batch) -> list[Batch]:
    records = json.loads(gzip.decompress(batch.body))["records"]
    half = len(records) // 2
    return [
        _batch(batch.kind, [json.dumps(r, separators=(",", ":")).encode() for r in part])
        for part in (records[:half], records[half:])
    ]


def _detail(answer: Response) -> str:
    try:
        return str(json.loads(answer.body)["detail"])[:300]
    except (ValueError, KeyError, TypeError):
        return answer.body[:200].decode("utf-8", "replace")


def _retry_after(answer: Response) -> float | None:
    value = answer.headers.get("retry-after")
    try:
        return min(_MAX_RETRY_AFTER, max(0.0, float(value))) if value is not None else None
    except ValueError:
        return None  # an HTTP date: rare for APIs; the backoff schedule applies
