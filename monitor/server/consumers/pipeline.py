"""The broker-neutral part of a consumer: from delivered messages to committed records and acks.

A broker adapter (:mod:`.jetstream`, :mod:`.mqtt`) hands messages to :meth:`Pipeline.offer` and
fetches more only while :meth:`Pipeline.room` says there is room (``max_in_flight`` messages held
at most). Worker threads take what is queued, read each message (:mod:`.message`), store the
records of several messages of one kind in one transaction (up to ``batch_records``), then for
each message publish a dead letter when some of it was refused, and only then acknowledge it.

Delivery guarantees:

* A message is acknowledged after its records are committed, so a consumer killed at any moment
  loses nothing; the broker delivers the unacknowledged messages again and the idempotent
  prediction ids make the second copy a duplicate, not a second row.
* A database that fails (connection refused, timeouts, lock or serialisation conflicts) is waited
  for with exponential backoff, holding the messages: no negative acknowledgement, no redelivery
  loop. Workers stuck on the database stop taking messages, the queue fills to ``max_in_flight``
  and the adapter stops fetching.
* An error that waiting cannot fix (a bug) is isolated to its message, which is dead-lettered
  with the error, so one bad message cannot stop the stream.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from monitor.server.consumers.message import Batch, ModelScope, Poison, read_message
from monitor.server.consumers.metrics import ConsumerMetrics
from monitor.server.consumers.sink import MAX_RECORDS, IngestResult, Kind, Sink, is_transient

log = logging.getLogger("cvmon.consume")


@dataclass(eq=False, slots=True)
class Delivery:
    """One message as delivered. ``handle`` is the adapter's own (a NATS message, an MQTT mid)."""

    subject: str
    payload: bytes
    redelivered: bool = False
    #: When the broker stored it (Unix seconds), where the broker says so (NATS).
    published_at: float | None = None
    handle: Any = None
    received: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why (part of) a message was not stored. ``errors``: (record index, reason); the index is None
    when the message as a whole is unreadable."""

    subject: str
    reason: str
    errors: tuple[tuple[int | None, str], ...]
    consumer: str
    at: datetime

    def error_list(self, limit: int = 100) -> list[dict[str, Any]]:
        return [{"index": i, "error": e} for i, e in self.errors[:limit]]


class BrokerError(Exception):
    """The broker did not confirm a publish (dead letter); tried again after a backoff."""


class Broker(Protocol):
    """What the pipeline needs from a broker adapter; every method is called from worker threads."""

    name: str
    #: The subject/topic level separator ("." for NATS, "/" for MQTT).
    separator: str

    def ack(self, delivery: Delivery) -> None:
        """Acknowledge (best effort: a lost acknowledgement means a harmless redelivery)."""

    def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """Give back messages this process will not finish (shutting down while the database is
        away), to be delivered again after ``delay`` seconds, or when the broker can."""

    def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        """Publish the dead letter and wait for the broker to confirm it, or raise :class:`BrokerError`."""


@dataclass(frozen=True, slots=True)
class Options:
    consumer: str
    max_body_bytes: int = 32 * 1024 * 1024
    max_in_flight: int = 256
    batch_records: int = MAX_RECORDS
    workers: int = 2
    backoff_base: float = 0.5
    backoff_max: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_records <= MAX_RECORDS:
            raise ValueError(f"batch_records must be 1..{MAX_RECORDS}")
        if self.max_in_flight < 1 or self.workers < 1:
            raise ValueError("max_in_flight and workers must be at least 1")


class Stopped(Exception):
    """The pipeline is shutting down: leave the messages unacknowledged."""


class Totals:
    """Counts since start, for the progress line (thread-safe)."""

    __slots__ = ("_lock", "accepted", "dead_letters", "duplicates", "messages", "redelivered", "rejected")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.accepted = self.duplicates = self.rejected = self.messages = self.dead_letters = self.redelivered = 0

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return {name: getattr(self, name) for name in self.__slots__ if name != "_lock"}


@dataclass(slots=True)
class _Item:
    delivery: Delivery
    batch: Batch | None = None
    errors: list[tuple[int | None, str]] = field(default_factory=list)
    reason: str | None = None


class Pipeline:
    def __init__(
        self,
        broker: Broker,
        sink: Sink,
        *,
        scope: ModelScope,
        options: Options,
        metrics: ConsumerMetrics,
        clock: Callable[[], float] = time.time,
        on_room: Callable[[], None] = lambda: None,
    ) -> None:
        self.broker = broker
        self.sink = sink
        self.scope = scope
        self.options = options
        self.metrics = metrics.bind(broker.name, options.consumer)
        self.totals = Totals()
        self.clock = clock
        self.on_room = on_room
        self._cond = threading.Condition()
        self._queue: collections.deque[Delivery] = collections.deque()
        self._held: dict[int, Delivery] = {}
        self._paused = 0
        self._closing = threading.Event()
        self._abandon = threading.Event()
        self._threads: list[threading.Thread] = []

    # -----------------------------------------------------------------------------------------
    # the adapter's side

    def room(self) -> int:
        """How many more messages may be fetched now."""
        with self._cond:
            return self.options.max_in_flight - len(self._held)

    def offer(self, delivery: Delivery) -> None:
        """Queue a delivered message (never blocks: the adapter asked :meth:`room` first, or the
        broker's own flow control bounds what it sends)."""
        with self._cond:
            self._held[id(delivery)] = delivery
            self._queue.append(delivery)
            self._cond.notify()
            held = len(self._held)
        self.metrics.in_flight.set(held)

    def held(self) -> list[Delivery]:
        """The messages received and not yet acknowledged (for keep-alives)."""
        with self._cond:
            return list(self._held.values())

    @property
    def paused(self) -> bool:
        return self._paused > 0

    # -----------------------------------------------------------------------------------------
    # life cycle

    def start(self) -> None:
        for i in range(self.options.workers):
            thread = threading.Thread(target=self._work, name=f"cvmon-consume-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the queued messages (for up to ``timeout`` seconds), then give back the rest."""
        self._closing.set()
        with self._cond:
            self._cond.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._abandon.set()
        for thread in self._threads:
            thread.join(5.0)
        with self._cond:
            left = list(self._held.values())
            self._queue.clear()
            self._held.clear()
        if left:
            log.warning("cvmon consume: %d messages not finished; the broker will deliver them again", len(left))
            try:
                self.broker.release(left)
            except Exception as exc:
                log.warning("cvmon consume: could not release messages: %s", exc)

    # -----------------------------------------------------------------------------------------
    # workers

    def _take(self) -> list[Delivery]:
        """The queued messages (at least one, at most what one worker should store at once)."""
        with self._cond:
            while not self._queue:
                if self._closing.is_set():
                    return []
                self._cond.wait(0.5)
            group = [self._queue.popleft()]
            size = len(group[0].payload)
            # Leave some for the other workers when there is little: they store in parallel.
            limit = max(1, len(self._queue) // self.options.workers + 1) if self.options.workers > 1 else len(self._queue) + 1
            while self._queue and len(group) < limit and size < self.options.max_body_bytes:
                d = self._queue.popleft()
                group.append(d)
                size += len(d.payload)
        return group

    def _work(self) -> None:
        while True:
            group = self._take()
            if not group:
                return
            try:
                self._process(group)
            except Stopped:
                return  # stop() releases what is still held
            except Exception:  # a worker must outlive any bug
                log.exception("cvmon consume: unexpected error processing %d messages", len(group))
                self._give_up(group)

    def _give_up(self, group: list[Delivery]) -> None:
        """After a bug: dead-letter the messages of the group not yet finished, so that one message
        cannot stop the stream; hand back (for later) any that cannot even be dead-lettered."""
        with self._cond:
            left = [d for d in group if id(d) in self._held]
        reason = "cvmon failed while processing this message (see the consumer's log); some of its records may be stored, replaying it is safe"
        for d in left:
            try:
                self._dead_letter(d, DeadLetter(d.subject, reason, ((None, reason),), self.options.consumer, datetime.now(UTC)))
                self.broker.ack(d)
                self.metrics.dead_letters.inc()
                self.totals.add(dead_letters=1)
            except Exception as exc:
                log.warning("cvmon consume: could not dead-letter a message from %s (%s); handing it back", d.subject, exc)
                with contextlib.suppress(Exception):
                    self.broker.release([d], delay=60.0)
        self._forget(left)

    def _forget(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            for d in deliveries:
                self._held.pop(id(d), None)
            held = len(self._held)
        self.metrics.in_flight.set(held)
        self.on_room()

    def _process(self, group: list[Delivery]) -> None:
        items = [self._read(d) for d in group]
        by_kind: dict[Kind, list[_Item]] = {}
        for item in items:
            if item.batch is not None and item.batch.records:
                by_kind.setdefault(item.batch.kind, []).append(item)
            else:  # nothing to store: unreadable, or every record refused
                self._finish(item)
        for kind, kind_items in by_kind.items():
            for chunk in _chunks(kind_items, self.options.batch_records):
                self._store(kind, chunk)
                for item in chunk:  # acknowledged as soon as committed: less to redeliver after a crash
                    self._finish(item)

    def _read(self, delivery: Delivery) -> _Item:
        if delivery.redelivered:
            self.metrics.redelivered.inc()
            self.totals.add(redelivered=1)
        try:
            batch = read_message(
                delivery.subject, delivery.payload, separator=self.broker.separator,
                limit=self.options.max_body_bytes, scope=self.scope,
            )  # fmt: skip
        except Poison as exc:
            return _Item(delivery, reason=str(exc))
        return _Item(delivery, batch, list(batch.refused))

    def _store(self, kind: Kind, chunk: list[_Item]) -> None:
        records = [r for item in chunk for r in item.batch.records]  # type: ignore[union-attr]
        try:
            result = self._write(kind, records)
        except Stopped:
            raise
        except Exception as exc:
            if len(chunk) > 1:  # find the message that fails: store them one by one
                for item in chunk:
                    self._store(kind, [item])
                return
            log.exception("cvmon consume: storing the records of a message on %s failed; dead-lettering it", chunk[0].delivery.subject)
            chunk[0].reason = f"cvmon could not store these records ({type(exc).__name__}: {str(exc).splitlines()[0][:300]}); see the consumer's log"
            return
        # map the rejections of the combined batch back to each message's own record indices
        offset = 0
        rejected = iter(sorted(result.rejected))
        pending = next(rejected, None)
        for item in chunk:
            batch = item.batch
            assert batch is not None
            end = offset + len(batch.records)
            while pending is not None and pending[0] < end:
                item.errors.append((batch.indices[pending[0] - offset], pending[1]))
                pending = next(rejected, None)
            offset = end
        self.metrics.count(kind, result.accepted, result.duplicates, len(result.rejected))
        self.totals.add(accepted=result.accepted, duplicates=result.duplicates, rejected=len(result.rejected))
        now = self.clock()
        self.metrics.last_commit.set(now)
        published = [i.delivery.published_at for i in chunk if i.delivery.published_at is not None]
        if published:
            self.metrics.lag.set(max(0.0, now - min(published)))

    def _write(self, kind: Kind, records: list[Any]) -> IngestResult:
        """Store, waiting out a failing database (holding the messages) until it answers."""
        attempt = 0
        while True:
            start = time.perf_counter()
            try:
                result = self.sink.write(kind, records)
            except Exception as exc:
                if not is_transient(exc):
                    raise
                attempt += 1
                delay = self._backoff(attempt)
                if attempt == 1:
                    self._pause(+1)
                log.warning(
                    "cvmon consume: the database failed (%s); holding %d records, retrying in %.1fs (attempt %d)",
                    str(exc).strip().splitlines()[0][:200], len(records), delay, attempt,
                )  # fmt: skip
                if self._abandon.wait(delay):
                    self._pause(-1)
                    raise Stopped from None
                continue
            self.metrics.batch_duration.observe(time.perf_counter() - start)
            if attempt:
                self._pause(-1)
                log.warning("cvmon consume: the database answers again; resuming")
            return result

    def _pause(self, step: int) -> None:
        with self._cond:
            self._paused += step
            paused = self._paused
        self.metrics.paused.set(1 if paused else 0)

    def _finish(self, item: _Item) -> None:
        """Dead-letter what was refused, then acknowledge."""
        d, batch = item.delivery, item.batch
        if batch is not None and batch.refused:  # refused before storing: not counted by _store
            self.metrics.count(batch.kind, 0, 0, len(batch.refused))
            self.totals.add(rejected=len(batch.refused))
        letter = None
        errors: list[tuple[int | None, str]] = sorted(item.errors, key=lambda e: e[0] or 0)
        if item.reason is not None:
            letter = DeadLetter(d.subject, item.reason, ((None, item.reason), *errors), self.options.consumer, datetime.now(UTC))
            if batch is not None:  # read, but storing failed: none of its records is stored
                self.metrics.count(batch.kind, 0, 0, len(batch.records))
                self.totals.add(rejected=len(batch.records))
        elif errors:
            total = batch.total if batch is not None else len(errors)
            first = errors[0]
            reason = f"{len(errors)} of {total} records rejected; first: record {first[0]}: {first[1]}"
            letter = DeadLetter(d.subject, reason[:1000], tuple(errors), self.options.consumer, datetime.now(UTC))
        if letter is not None:
            self._dead_letter(d, letter)
            self.metrics.dead_letters.inc()
            self.totals.add(dead_letters=1)
            log.info("cvmon consume: dead-lettered a message from %s: %s", d.subject, letter.reason)
        try:
            self.broker.ack(d)
        except Exception as exc:  # the broker delivers it again; its records are duplicates then
            log.warning("cvmon consume: acknowledging a message failed (%s); it will be delivered again", exc)
        self.metrics.messages.inc()
        self.totals.add(messages=1)
        self._forget([d])

    def _dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        attempt = 0
        while True:
            try:
                self.broker.dead_letter(delivery, letter)
                return
            except BrokerError as exc:
                attempt += 1
                delay = self._backoff(attempt)
                log.warning("cvmon consume: publishing a dead letter failed (%s); retrying in %.1fs", exc, delay)
                if self._abandon.wait(delay):
                    raise Stopped from None

    def _backoff(self, attempt: int) -> float:
        delay = min(self.options.backoff_max, self.options.backoff_base * 2.0 ** min(attempt - 1, 20))
        return delay * random.uniform(0.5, 1.0)


def _chunks(items: list[_Item], limit: int) -> list[list[_Item]]:
    """Consecutive messages grouped so that each group holds at most ``limit`` records (a message
    is never split: it holds at most MAX_RECORDS, the largest limit)."""
    chunks: list[list[_Item]] = []
    size = 0
    for item in items:
        n = len(item.batch.records)  # type: ignore[union-attr]
        if not chunks or size + n > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += n
    return chunks
