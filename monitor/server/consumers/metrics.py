"""The consumer's own metrics, served by each consumer process on its own port.

Why a port of its own rather than counters in the database behind the API's /metrics: these are
facts about one running process (what it holds in flight, whether it is paused), and the moment
they matter most is when the database is failing — counters stored in that database would stop
moving exactly then. Prometheus scrapes each consumer as one more target (``instance`` tells them
apart), ``rate()`` takes care of restarts, and a consumer that died shows as ``up == 0``. The
names come from the one table, :mod:`monitor.server.names`.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from monitor.server.names import METRIC

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _counter(name: str, registry: CollectorRegistry) -> Counter:
    m = METRIC[name]
    # prometheus_client adds the _total suffix of counters itself
    return Counter(m.name.removesuffix("_total"), m.help, list(m.labels), registry=registry)


def _gauge(name: str, registry: CollectorRegistry) -> Gauge:
    m = METRIC[name]
    return Gauge(m.name, m.help, list(m.labels), registry=registry)


class ConsumerMetrics:
    """The metric families, in a registry of their own (passed in; nothing global)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.records = _counter("cvmon_consumer_records_total", registry)
        self.messages = _counter("cvmon_consumer_messages_total", registry)
        self.dead_letters = _counter("cvmon_consumer_dead_letters_total", registry)
        self.redelivered = _counter("cvmon_consumer_redelivered_messages_total", registry)
        self.pending = _gauge("cvmon_consumer_pending_messages", registry)
        self.in_flight = _gauge("cvmon_consumer_in_flight_messages", registry)
        self.lag = _gauge("cvmon_consumer_lag_seconds", registry)
        self.paused = _gauge("cvmon_consumer_paused", registry)
        self.last_commit = _gauge("cvmon_consumer_last_commit_timestamp_seconds", registry)
        duration = METRIC["cvmon_consumer_batch_duration_seconds"]
        self.batch_duration = Histogram(duration.name, duration.help, list(duration.labels), registry=registry, buckets=_BUCKETS)

    def bind(self, broker: str, consumer: str) -> BoundMetrics:
        return BoundMetrics(self, broker, consumer)


class BoundMetrics:
    """The children of one consumer (labels ``broker`` and ``consumer`` fixed), created once."""

    def __init__(self, families: ConsumerMetrics, broker: str, consumer: str) -> None:
        labels = (broker, consumer)
        self._records = families.records
        self._labels = labels
        self.messages = families.messages.labels(*labels)
        self.dead_letters = families.dead_letters.labels(*labels)
        self.redelivered = families.redelivered.labels(*labels)
        self.in_flight = families.in_flight.labels(*labels)
        self.lag = families.lag.labels(*labels)
        self.paused = families.paused.labels(*labels)
        self.paused.set(0)
        self.last_commit = families.last_commit.labels(*labels)
        self.batch_duration = families.batch_duration.labels(*labels)
        self._pending_family = families.pending
        self._children: dict[tuple[str, str], Any] = {}

    def count(self, kind: str, accepted: int, duplicates: int, rejected: int) -> None:
        for outcome, n in (("accepted", accepted), ("duplicate", duplicates), ("rejected", rejected)):
            if n:
                child = self._children.get((kind, outcome))
                if child is None:
                    child = self._children[(kind, outcome)] = self._records.labels(*self._labels, kind, outcome)
                child.inc(n)

    def set_pending(self, n: int) -> None:
        """Only brokers that can tell (NATS) export the pending count."""
        self._pending_family.labels(*self._labels).set(n)


def serve(registry: CollectorRegistry, host: str, port: int) -> Any:
    """Serve ``registry`` at http://host:port/metrics from a daemon thread; returns the server
    (``shutdown()`` stops it). Raises :class:`OSError` when the port is taken."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server
