"""Fixtures of the consumer tests: names of one's own on the shared brokers, removed afterwards."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.consumers.brokers import (
    MQTT_HOST,
    MQTT_PORT,
    NATS_URL,
    MqttNames,
    Nats,
    NatsNames,
    forget_session,
    require_server,
)


@pytest.fixture
def nats_names() -> Iterator[NatsNames]:
    """A stream, subjects and dead letters of this test on the shared NATS server (deleted after)."""
    host, _, port = NATS_URL.removeprefix("nats://").partition(":")
    require_server(host, int(port or 4222), "NATS")
    names = NatsNames()
    yield names
    client = Nats(NATS_URL)
    try:
        client.delete(names)
    finally:
        client.close()


@pytest.fixture
def nats_client(nats_names: NatsNames) -> Iterator[Nats]:
    client = Nats(NATS_URL)
    yield client
    client.close()


@pytest.fixture
def mqtt_names() -> Iterator[MqttNames]:
    """Topics, a group and client ids of this test on the shared Mosquitto (sessions ended after)."""
    require_server(MQTT_HOST, MQTT_PORT, "Mosquitto")
    names = MqttNames()
    yield names
    for n in (1, 2):
        forget_session(MQTT_PORT, names.client_id(n))
