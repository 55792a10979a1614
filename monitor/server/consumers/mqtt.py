"""``cvmon consume mqtt``: a QoS 1 subscriber with a persistent session (MQTT 5 or 3.1.1).

The subscription is shared (``$share/<group>/<topic>``), so several consumers with the same group
and different client ids split the messages of a topic between them. The session is persistent
(MQTT 5: clean start off and a session expiry; 3.1.1: clean session off), so the broker keeps the
messages that arrive while a consumer is down, and sends the ones it had delivered without an
acknowledgement again when the consumer comes back with the same client id.

Acknowledgements are manual: a PUBACK goes out only once the message's records are committed,
and in the order the messages arrived (as MQTT requires), so a finished message may wait for an
earlier one. The broker's flow control bounds what is in flight (MQTT 5: the receive maximum this
client sends; 3.1.1: the broker's ``max_inflight_messages``). Message ids are only valid on the
connection that delivered them: after a reconnect the broker sends the unacknowledged messages
again, and acknowledgements of the old connection's ids are dropped, never sent on the new one.

Dead letters go to ``<dead_letter_prefix>/<the original topic>`` with QoS 1 as a JSON envelope
(MQTT 3.1.1 has no properties to carry the reason): reason, errors, the original topic and the
original payload in base64. MQTT keeps a message only for sessions subscribed to its topic:
subscribe a persistent session to ``<dead_letter_prefix>/#`` to keep them (docs/streaming.md).
A topic filter that would match the dead letters themselves is refused at start.
"""

from __future__ import annotations

import base64
import collections
import json
import logging
import socket
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from monitor.errors import ConfigError, require
from monitor.server.consumers.message import filter_reaches
from monitor.server.consumers.pipeline import BrokerError, DeadLetter, Delivery, Pipeline

log = logging.getLogger("cvmon.consume")


def default_client_id() -> str:
    return f"cvmon-consume-{socket.gethostname()}"[:64]


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    topic: str = "cvmon/ingest/#"
    #: The shared-subscription group; "" subscribes without sharing.
    group: str = "cvmon"
    client_id: str = field(default_factory=default_client_id)
    protocol: Literal["5", "3.1.1"] = "5"
    dead_letter_prefix: str = "cvmon/dead"
    session_expiry: int = 7 * 86400
    keepalive: int = 30
    receive_maximum: int = 256
    username: str | None = None
    password: str | None = None
    tls: bool = False
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    @property
    def subscription(self) -> str:
        return f"$share/{self.group}/{self.topic}" if self.group else self.topic


class MqttBroker:
    name = "mqtt"
    separator = "/"

    def __init__(self, cfg: MqttConfig) -> None:
        if filter_reaches(cfg.topic, cfg.dead_letter_prefix, separator="/", one="+", rest="#"):
            raise ConfigError(
                f"the topic filter {cfg.topic!r} also matches the dead letters ({cfg.dead_letter_prefix}/#): "
                "choose a --dead-letter-prefix outside it"
            )
        self.cfg = cfg
        self.mqtt = require("paho.mqtt.client", feature="cvmon consume mqtt", extra="mqtt")
        self.pending: int | None = None  # MQTT cannot tell how many messages wait on the broker
        self._lock = threading.Lock()
        self._generation = 0
        self._order: collections.deque[tuple[int, int]] = collections.deque()  # (generation, mid) as received
        self._done: set[tuple[int, int]] = set()
        self._pipeline: Pipeline | None = None
        self._closing = False
        self._client = self._make_client()

    def _make_client(self) -> Any:
        from paho.mqtt.client import CallbackAPIVersion, MQTTv5, MQTTv311

        cfg = self.cfg
        v5 = cfg.protocol == "5"
        client = self.mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=cfg.client_id, protocol=MQTTv5 if v5 else MQTTv311,
            clean_session=None if v5 else False, manual_ack=True,
        )  # fmt: skip
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls or cfg.tls_ca or cfg.tls_cert:
            client.tls_set(ca_certs=cfg.tls_ca, certfile=cfg.tls_cert, keyfile=cfg.tls_key)
        client.reconnect_delay_set(1, 30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    # -----------------------------------------------------------------------------------------
    # paho's network thread

    def _on_connect(self, client: Any, _userdata: Any, flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            log.error("mqtt: %s:%d refused the connection: %s", self.cfg.host, self.cfg.port, reason)
            return
        with self._lock:
            self._generation += 1
            self._order.clear()
            self._done.clear()
        if self.cfg.protocol == "5":
            from paho.mqtt.subscribeoptions import SubscribeOptions

            client.subscribe(self.cfg.subscription, options=SubscribeOptions(qos=1))
        else:
            client.subscribe(self.cfg.subscription, qos=1)
        log.info("mqtt: connected to %s:%d as %s (session present: %s); subscribed to %s",
                 self.cfg.host, self.cfg.port, self.cfg.client_id, flags.session_present, self.cfg.subscription)  # fmt: skip

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        with self._lock:
            self._generation += 1  # the old connection's message ids mean nothing any more
            self._order.clear()
            self._done.clear()
        if not self._closing:
            log.warning("mqtt: disconnected (%s); reconnecting", reason)

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        pipeline = self._pipeline
        if pipeline is None:  # pragma: no cover - subscribed only after the pipeline is set
            return
        with self._lock:
            handle = (self._generation, msg.mid, msg.qos)
            if msg.qos > 0:
                self._order.append((self._generation, msg.mid))
        pipeline.offer(Delivery(msg.topic, msg.payload, bool(msg.dup), None, handle))

    # -----------------------------------------------------------------------------------------
    # worker threads

    def ack(self, delivery: Delivery) -> None:
        generation, mid, qos = delivery.handle
        if qos == 0:
            return
        with self._lock:
            if generation != self._generation:
                return  # delivered on a connection since lost: the broker sends it again
            self._done.add((generation, mid))
            self._send_acks()

    def _send_acks(self) -> None:
        while self._order and self._order[0] in self._done:
            key = self._order.popleft()
            self._done.discard(key)
            if key[1] > 0:
                self._client.ack(key[1], 1)

    def release(self, deliveries: Sequence[Delivery], delay: float = 0.0) -> None:
        """MQTT has no negative acknowledgement: the session keeps these messages unacknowledged
        and the broker sends them again on the next connection. Later messages must not wait for
        them, so they leave the acknowledgement order without a PUBACK."""
        with self._lock:
            for d in deliveries:
                generation, mid, qos = d.handle
                if qos and generation == self._generation and (generation, mid) in self._order:
                    index = self._order.index((generation, mid))
                    self._order[index] = (generation, -mid)  # skipped, never acknowledged
                    self._done.add((generation, -mid))
            self._send_acks()

    def dead_letter(self, delivery: Delivery, letter: DeadLetter) -> None:
        envelope = {
            "reason": letter.reason,
            "errors": letter.error_list(1000),
            "topic": delivery.subject,
            "consumer": letter.consumer,
            "dead_lettered_at": letter.at.isoformat(),
            "payload_base64": base64.b64encode(delivery.payload).decode(),
        }
        if not self._client.is_connected():
            raise BrokerError("not connected")
        topic = f"{self.cfg.dead_letter_prefix}/{delivery.subject}"
        info = self._client.publish(topic, json.dumps(envelope).encode(), qos=1)
        try:
            info.wait_for_publish(10.0)
        except (RuntimeError, ValueError) as exc:
            raise BrokerError(str(exc)) from exc
        if not info.is_published():
            raise BrokerError("no PUBACK within 10 s")

    # -----------------------------------------------------------------------------------------

    def run(self, pipeline: Pipeline, stop: threading.Event) -> None:
        """Connect (retrying while the broker is away), consume until ``stop``, then finish."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        cfg = self.cfg
        self._pipeline = pipeline
        pipeline.start()
        properties = None
        if cfg.protocol == "5":
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = cfg.session_expiry
            properties.ReceiveMaximum = max(1, min(cfg.receive_maximum, 65535))
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive, clean_start=False, properties=properties)
        else:
            self._client.connect_async(cfg.host, cfg.port, cfg.keepalive)
        self._client.loop_start()
        try:
            stop.wait()
        finally:
            pipeline.stop()
            self._closing = True
            self._client.disconnect()
            self._client.loop_stop()
