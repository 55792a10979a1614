"""The samples and labelling series of /metrics, read from the database (a scrape never selects).

==================================  ================  ============================================
series                              labels            value
==================================  ================  ============================================
cvmon_pii_exposure_events_total     model             views of samples stored unmasked (``keep``)
cvmon_sample_access_total           model, action     views and exports (each in the access log)
cvmon_samples_stored_total          model             samples stored
cvmon_samples_dropped_total         model, reason     not stored: a face or plate under ``drop``
cvmon_labelling_queue_items         model, queue      items still without ground truth
cvmon_labelling_queue_age_seconds   model, queue      how long the oldest of them has waited
==================================  ================  ============================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from monitor.server.names import METRIC
from monitor.server.services.queues import queue_statuses
from monitor.server.services.sample_audit import counts


def _counter(name: str) -> CounterMetricFamily:
    # prometheus_client appends _total to counter sample names itself
    return CounterMetricFamily(name.removesuffix("_total"), METRIC[name].help, labels=list(METRIC[name].labels))


def _gauge(name: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRIC[name].help, labels=list(METRIC[name].labels))


class SampleCollector(Collector):
    """Sample counters and labelling queues of the models a key may see."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime], allows_model: Callable[[str], bool] = lambda _: True) -> None:
        self.engine = engine
        self.clock = clock
        self.allows_model = allows_model

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            totals = [r for r in counts(conn) if self.allows_model(r[0])]
            queues = [q for q in queue_statuses(conn, now=self.clock()) if self.allows_model(q.model)]
        exposures = _counter("cvmon_pii_exposure_events_total")
        access = _counter("cvmon_sample_access_total")
        stored = _counter("cvmon_samples_stored_total")
        dropped = _counter("cvmon_samples_dropped_total")
        for model, name, value in totals:
            if name == "exposures":
                exposures.add_metric([model], float(value))
            elif name in ("views", "exports"):
                access.add_metric([model, name.removesuffix("s")], float(value))
            elif name == "stored":
                stored.add_metric([model], float(value))
            elif name.startswith("dropped_"):
                dropped.add_metric([model, name.removeprefix("dropped_")], float(value))
        pending = _gauge("cvmon_labelling_queue_items")
        age = _gauge("cvmon_labelling_queue_age_seconds")
        for q in queues:
            pending.add_metric([q.model, q.queue], float(q.pending))
            age.add_metric([q.model, q.queue], q.age_seconds)
        yield from (exposures, access, stored, dropped, pending, age)
