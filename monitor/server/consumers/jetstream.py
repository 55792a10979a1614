"""``cvmon consume nats``: a durable pull consumer on a NATS JetStream stream.

Several processes started with the same ``durable`` name share one consumer on the server, so
JetStream hands each message to one of them; a message not acknowledged within ``ack_wait``
seconds (its process died) is delivered again, to any of them. The asyncio client (nats-py) runs
in the thread that calls :meth:`JetStreamBroker.run`; the pipeline's worker threads reach it
through the event loop.

Held messages are kept from redelivery while the database is away by ``in_progress`` (``+WPI``)
every third of ``ack_wait``; they are not negatively acknowledged. Dead letters are published
with JetStream (the publish waits for the stream to store them) to ``<dead_letter_prefix>.<the
original subject>``, the original payload as the body and the reason in headers; the stream
sequence of the original is the ``Nats-Msg-Id``, so a message dead-lettered twice (redelivered
before its acknowledgement arrived) is stored once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from monitor.errors import ConfigError, require
from monitor.server.consumers.message import filter_reaches
from monitor.server.consumers.pipeline import BrokerError, DeadLetter, Delivery, Pipeline

log = logging.getLogger("cvmon.consume")

#: Largest header value a dead letter carries (the error list is cut, the count is kept).
_MAX_HEADER = 4096


@dataclass(frozen=True, slots=True)
class NatsConfig:
    servers: tuple[str, ...] = ("nats://127.0.0.1:4222",)
    stream: str = "CVMON"
    #: The consumer's filter; also the stream's subjects when the stream is created.
    subjects: str = "cvmon.ingest.>"
    durable: str = "cvmon"
    dead_letter_prefix: str = "cvmon.dead"
    dead_letter_stream: str = "CVMON_DEAD"
    #: Create the streams (and the durable consumer) when missing.
    create: bool = True
    ack_wait: float = 30.0
    max_ack_pending: int = 10_000
    fetch_batch: int = 64
    user: str | None = None
    password: str | None = None
    token: str | None = None
    creds: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None


def _tls(cfg: NatsConfig) -> ssl.SSLContext | None:
    if not (cfg.tls_ca or cfg.tls_cert or any(s.startswith("tls://") for s in cfg.servers)):
        return None
    ctx = ssl.create_default_context(cafile=cfg.tls_ca)
    if cfg.tls_cert:
        ctx.load_cert_chain(cfg.tls_cert, cfg.tls_key)
    return ctx


def _header(text: str, limit: int = 1024) -> str:
    """A header value: one line of ASCII (non-ASCII escaped), at most ``limit`` characters."""
    return text.replace("\r", " ").replace("\n", " ").encode("ascii", "backslashreplace").decode()[:limit]


class JetStreamBroker:
    name = "nats"
    separator = "."

    def __init__(self, cfg: NatsConfig, *, pending_every: float = 5.0) -> None:
        if filter_reaches(cfg.subjects, cfg.dead_letter_prefix, separator=".", one="*", rest=">"):
            raise ConfigError(
                f"the subject filter {cfg.subjects!r} also matches the dead letters ({cfg.dead_letter_prefix}.>): "
                "choose a --dead-letter-prefix outside it"
            )
        self.cfg = cfg
        self.nats = require("nats", feature="cvmon consume nats", extra="nats")
        import nats.errors
        import nats.js.errors

        self.errors = nats.errors
        self.js_errors = nats.js.errors
        #: The durable consumer's unacknowledged messages on the server, as last polled.
        self.pending: int | None = None
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # made by run()
        self._nc: Any = None
        self._js: Any = None
        self._pending_every = pending_every
        self._closing = False

    # -----------------------------------------------------------------------------------------
    # called from the pipeline's worker threads

    def _call(self, coro: Any, timeout: float) -> Any:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    def ack(self, delivery: Delivery) -> None:
        self._call(delivery.handle.ack(), 10.0)

    def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        async def nak_all() -> None:
            for d in deliveries:
                await d.handle.nak(delay=delay or None)

        self._call(nak_all(), 10.0)

    def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        msg = delivery.handle
        meta = msg.metadata
        errors = json.dumps(letter.error_list(), ensure_ascii=True)
        if len(errors) > _MAX_HEADER:
            errors = json.dumps(letter.error_list(20), ensure_ascii=True)
        headers = {
            "Nats-Msg-Id": f"{meta.stream}:{meta.sequence.stream}",
            "Cvmon-Reason": _header(letter.reason),
            "Cvmon-Errors": errors[:_MAX_HEADER],
            "Cvmon-Rejected-Records": str(sum(1 for i, _ in letter.errors if i is not None)),
            "Cvmon-Subject": _header(delivery.subject),
            "Cvmon-Stream-Sequence": str(meta.sequence.stream),
            "Cvmon-Consumer": _header(letter.consumer),
            "Cvmon-Dead-Lettered-At": letter.at.isoformat(),
        }
        subject = f"{self.cfg.dead_letter_prefix}.{delivery.subject}"
        try:
            self._call(self._js.publish(subject, delivery.payload, headers=headers, timeout=5.0), 10.0)
        except self.errors.MaxPayloadError:
            # the original filled the server's max_payload: keep the reason, not the payload
            headers["Cvmon-Payload-Dropped-Bytes"] = str(len(delivery.payload))
            headers["Cvmon-Errors"] = headers["Cvmon-Errors"][:256]
            try:
                self._call(self._js.publish(subject, b"", headers=headers, timeout=5.0), 10.0)
            except Exception as exc:
                raise BrokerError(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:
            raise BrokerError(f"{type(exc).__name__}: {exc}") from exc

    # -----------------------------------------------------------------------------------------
    # the fetch loop

    def run(self, pipeline: Pipeline, stop: threading.Event) -> None:
        """Connect, fetch while the pipeline has room, until ``stop``; then finish and close."""
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main(pipeline, stop))
        finally:
            self._loop.close()

    async def _connect(self, stop: threading.Event) -> bool:
        """Connect, retrying until the server answers (a consumer may start before its broker) or
        ``stop``; nats-py reconnects by itself after that."""
        cfg = self.cfg
        said: dict[str, float] = {}

        async def error_cb(exc: Exception) -> None:
            text = str(exc) or repr(exc)
            if time.monotonic() - said.get(text, -60.0) >= 60.0:  # each kind once a minute
                said[text] = time.monotonic()
                log.warning("nats: %s", text)

        async def disconnected_cb() -> None:
            if not self._closing:
                log.warning("nats: disconnected; reconnecting")

        async def reconnected_cb() -> None:
            log.warning("nats: reconnected to %s", self._nc.connected_url.netloc if self._nc else "?")

        options: dict[str, Any] = {
            "servers": list(cfg.servers), "name": f"cvmon-consume-{cfg.durable}", "tls": _tls(cfg),
            "user": cfg.user, "password": cfg.password, "token": cfg.token, "user_credentials": cfg.creds,
            "max_reconnect_attempts": -1, "reconnect_time_wait": 1, "connect_timeout": 5,
            "error_cb": error_cb, "disconnected_cb": disconnected_cb, "reconnected_cb": reconnected_cb,
        }  # fmt: skip
        task = asyncio.ensure_future(self.nats.connect(**{k: v for k, v in options.items() if v is not None}))
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if stop.is_set() and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                return False
        self._nc = task.result()
        self._js = self._nc.jetstream()
        return True

    async def _ensure_streams(self) -> None:
        from nats.js.api import RetentionPolicy, StorageType

        cfg = self.cfg
        wanted = (
            (cfg.stream, cfg.subjects, RetentionPolicy.WORK_QUEUE, None),
            # dead letters stay until someone looks at them, a month at most
            (cfg.dead_letter_stream, f"{cfg.dead_letter_prefix}.>", RetentionPolicy.LIMITS, 30 * 86400.0),
        )
        for name, subjects, retention, max_age in wanted:
            try:
                await self._js.stream_info(name)
                continue
            except self.js_errors.NotFoundError:
                if not cfg.create:
                    raise ConfigError(
                        f"JetStream stream {name!r} does not exist; create it (subjects {subjects!r}) or drop --no-create"
                    ) from None
            await self._js.add_stream(
                name=name, subjects=[subjects], retention=retention, storage=StorageType.FILE,
                max_age=max_age, duplicate_window=120.0,
            )  # fmt: skip
            log.info("nats: created stream %s (subjects %s)", name, subjects)

    async def _subscribe(self) -> Any:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        cfg = self.cfg
        config = ConsumerConfig(
            durable_name=cfg.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
            ack_wait=cfg.ack_wait, max_deliver=-1, max_ack_pending=cfg.max_ack_pending, filter_subject=cfg.subjects,
        )  # fmt: skip
        for attempt in range(5):
            try:
                return await self._js.pull_subscribe(cfg.subjects, durable=cfg.durable, stream=cfg.stream, config=config)
            except self.js_errors.BadRequestError:
                # another process created the same durable consumer at the same moment: bind to it
                if attempt == 4:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError("unreachable")

    async def _main(self, pipeline: Pipeline, stop: threading.Event) -> None:
        if not await self._connect(stop):
            return
        try:
            await self._ensure_streams()
            sub = await self._subscribe()
            room = asyncio.Event()
            loop = self._loop

            def on_room() -> None:
                loop.call_soon_threadsafe(room.set)

            pipeline.on_room = on_room
            pipeline.start()
            log.info("nats: consuming %s from stream %s as %s", self.cfg.subjects, self.cfg.stream, self.cfg.durable)
            keep_alive = asyncio.ensure_future(self._keep_alive(pipeline, stop))
            pending = asyncio.ensure_future(self._poll_pending(sub, pipeline, stop))
            try:
                await self._fetch_loop(sub, pipeline, stop, room)
            finally:
                # finish what is held while the loop still runs (acks and dead letters go through it)
                await loop.run_in_executor(None, pipeline.stop)
                keep_alive.cancel()
                pending.cancel()
        finally:
            self._closing = True
            try:  # the acknowledgements sent last must leave before the connection closes
                await self._nc.flush(timeout=5)
            except Exception as exc:
                log.debug("nats: flush: %r", exc)
            await self._nc.close()

    async def _fetch_loop(self, sub: Any, pipeline: Pipeline, stop: threading.Event, room: asyncio.Event) -> None:
        errors = self.errors
        while not stop.is_set():
            free = pipeline.room()
            if free <= 0:
                room.clear()
                if pipeline.room() <= 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(room.wait(), 1.0)
                continue
            try:
                msgs = await sub.fetch(min(free, self.cfg.fetch_batch), timeout=1.0)
            except (TimeoutError, errors.TimeoutError):
                continue
            except errors.Error as exc:  # disconnected: the client reconnects by itself
                log.debug("nats: fetch: %r", exc)
                await asyncio.sleep(0.5)
                continue
            for m in msgs:
                meta = m.metadata
                pipeline.offer(Delivery(m.subject, m.data, meta.num_delivered > 1, meta.timestamp.timestamp(), m))

    async def _keep_alive(self, pipeline: Pipeline, stop: threading.Event) -> None:
        """Tell the server that held messages are still being worked on (the database may be
        away), so that it does not deliver them to another consumer meanwhile."""
        every = max(0.5, self.cfg.ack_wait / 3)
        while not stop.is_set():
            await asyncio.sleep(every)
            old = time.monotonic() - every
            for d in pipeline.held():
                if d.received < old:
                    try:
                        await d.handle.in_progress()
                    except Exception as exc:  # already acknowledged, or disconnected
                        log.debug("nats: in_progress: %r", exc)

    async def _poll_pending(self, sub: Any, pipeline: Pipeline, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                info = await sub.consumer_info()
                self.pending = int(info.num_pending or 0) + int(info.num_ack_pending or 0)
                pipeline.metrics.set_pending(self.pending)
            except Exception as exc:
                log.debug("nats: consumer info: %r", exc)
            await asyncio.sleep(self._pending_every)
