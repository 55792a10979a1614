"""The MQTT consumer's acknowledgement order, message by message.

MQTT requires PUBACKs in the order the messages arrived, and message ids mean something only on
the connection that delivered them. These are checked here with paho's ``ack`` recorded instead
of sent (the real broker cannot show an acknowledgement that was held back or dropped on
purpose); the end-to-end behaviour runs against Mosquitto in test_mqtt.py.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from monitor.server.consumers.mqtt import MqttBroker, MqttConfig
from monitor.server.consumers.pipeline import Delivery


class Offers:
    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def offer(self, delivery: Delivery) -> None:
        self.deliveries.append(delivery)


def _broker() -> tuple[MqttBroker, list[int], Offers]:
    broker = MqttBroker(MqttConfig(client_id="test-acks"))
    sent: list[int] = []
    broker._client.ack = lambda mid, qos: sent.append(mid)  # recorded, not sent
    offers = Offers()
    broker._pipeline = offers  # type: ignore[assignment]
    return broker, sent, offers


def _deliver(broker: MqttBroker, *mids: int, qos: int = 1) -> None:
    for mid in mids:
        broker._on_message(None, None, SimpleNamespace(topic="cvmon/ingest/predictions", payload=b"{}", dup=False, mid=mid, qos=qos))


def _connected(broker: MqttBroker) -> None:
    ok: Any = SimpleNamespace(is_failure=False)
    broker._client.subscribe = lambda *a, **k: None
    broker._on_connect(broker._client, None, SimpleNamespace(session_present=True), ok, None)


def test_acknowledgements_leave_in_arrival_order() -> None:
    broker, sent, offers = _broker()
    _connected(broker)
    _deliver(broker, 1, 2, 3)
    a, b, c = offers.deliveries
    broker.ack(c)
    broker.ack(b)
    assert sent == []  # 1 is not finished: nothing may be acknowledged past it
    broker.ack(a)
    assert sent == [1, 2, 3]


def test_released_messages_do_not_hold_later_ones_back() -> None:
    broker, sent, offers = _broker()
    _connected(broker)
    _deliver(broker, 7, 8, 9)
    first, second, third = offers.deliveries
    broker.ack(second)
    broker.release([first])
    assert sent == [8]  # 7 stays unacknowledged: the broker sends it again on the next connection
    broker.release([third])
    _deliver(broker, 10)
    broker.ack(offers.deliveries[-1])
    assert sent == [8, 10]


def test_acknowledgements_of_a_lost_connection_are_dropped() -> None:
    broker, sent, offers = _broker()
    _connected(broker)
    _deliver(broker, 5)
    old = offers.deliveries[-1]
    broker._on_disconnect(None, None, None, "connection lost", None)
    _connected(broker)
    _deliver(broker, 5)  # the broker reuses the id for the resent message
    new = offers.deliveries[-1]
    broker.ack(old)
    assert sent == []  # id 5 of the old connection must not acknowledge the new delivery
    broker.ack(new)
    assert sent == [5]


def test_qos0_messages_need_no_acknowledgement() -> None:
    broker, sent, offers = _broker()
    _connected(broker)
    _deliver(broker, 0, qos=0)
    _deliver(broker, 4)
    broker.ack(offers.deliveries[1])
    broker.ack(offers.deliveries[0])
    assert sent == [4]
