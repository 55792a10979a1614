"""The canary and automation series of /metrics, read from the database (a scrape never compares).

=================================================  ===========================================  ==================================
series                                             labels                                       value
=================================================  ===========================================  ==================================
cvmon_canary_decision                              model, baseline, candidate, metric           1 pass, 0 inconclusive, -1 fail
cvmon_model_version_first_seen_timestamp_seconds   model, version                               the version's first prediction
cvmon_retraining_interval_seconds                  model                                        between the two newest versions
cvmon_retraining_requests_total                    model                                        retraining.requested events
cvmon_automation_events_total                      model, type                                  events emitted
cvmon_webhook_deliveries                           model, endpoint, state                       deliveries by state
=================================================  ===========================================  ==================================

Canary decisions are those recorded in the last day (by the compare API, ``cvmon canary check``
or the console); older pairs are over and drop out of the exposition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from monitor.server.names import METRIC
from monitor.server.services.automation import event_counts, pending_counts
from monitor.server.services.canary import stored_decisions
from monitor.server.services.models import version_first_seen

#: How long a recorded canary decision stays exported.
DECISION_TTL = timedelta(days=1)


def _gauge(name: str) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, METRIC[name].help, labels=list(METRIC[name].labels))


def _counter(name: str) -> CounterMetricFamily:
    # prometheus_client appends _total to counter sample names itself
    return CounterMetricFamily(name.removesuffix("_total"), METRIC[name].help, labels=list(METRIC[name].labels))


class RolloutCollector(Collector):
    """Canary decisions, version times (retraining frequency) and automation counts."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime], allows_model: Callable[[str], bool] = lambda _: True) -> None:
        self.engine = engine
        self.clock = clock
        self.allows_model = allows_model

    def collect(self) -> Iterator[Metric]:
        allowed = self.allows_model
        with self.engine.connect() as conn:
            decisions = stored_decisions(conn, newer_than=self.clock() - DECISION_TTL, allows_model=allowed)
            versions = [r for r in version_first_seen(conn) if allowed(r[0])]
            events = [r for r in event_counts(conn) if allowed(r[0])]
            deliveries = [r for r in pending_counts(conn) if allowed(r[0])]
        decision = _gauge("cvmon_canary_decision")
        for d in decisions:
            decision.add_metric([d.model, d.baseline, d.candidate, d.metric], float(d.decision))
        first_seen = _gauge("cvmon_model_version_first_seen_timestamp_seconds")
        by_model: dict[str, list[float]] = {}
        for model, version, seen in versions:
            first_seen.add_metric([model, version], seen.timestamp())
            by_model.setdefault(model, []).append(seen.timestamp())
        interval = _gauge("cvmon_retraining_interval_seconds")
        for model, times in sorted(by_model.items()):
            if len(times) >= 2:
                newest, previous = sorted(times)[-1], sorted(times)[-2]
                interval.add_metric([model], newest - previous)
        retraining = _counter("cvmon_retraining_requests_total")
        emitted = _counter("cvmon_automation_events_total")
        requests: dict[str, int] = {}
        for model, kind, n in events:
            emitted.add_metric([model, kind], float(n))
            if kind == "retraining.requested":
                requests[model] = n
        for model, n in sorted(requests.items()):
            retraining.add_metric([model], float(n))
        delivered = _gauge("cvmon_webhook_deliveries")
        for model, endpoint, state, n in deliveries:
            delivered.add_metric([model, endpoint, state], float(n))
        yield from (decision, first_seen, interval, retraining, emitted, delivered)
