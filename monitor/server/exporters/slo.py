"""The SLO series of /metrics, read from the per-minute counts in the database.

======================================  ===========================  ======================================
series                                  labels                       value
======================================  ===========================  ======================================
cvmon_slo_events_total                  slo, model, version          events ever counted (counter)
cvmon_slo_bad_events_total              slo, model, version          bad events ever counted (counter)
cvmon_slo_objective_ratio               slo, model                   the objective
cvmon_slo_error_budget_remaining_ratio  slo, model, version          1 - burn rate over the SLO window
cvmon_slo_burn_rate                     slo, model, version, window  burn rate over each alert window
======================================  ===========================  ======================================

The counters are sums of ``slo_events`` rows, which are only ever added to (folding old rows
keeps every sum), so they never go back, whichever replica serves the scrape. Budget and burn
rates are per model version, as the alerts decide by default (a canary burns its own budget);
sum the counters for the whole model. A window without events has no burn rate (the series is
absent, not 0). One grouped query per scrape (:func:`monitor.server.slo.counts.read_counts`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from monitor.server.exporters.escaping import displayable
from monitor.server.names import METRIC
from monitor.server.slo.burnrate import budget_remaining, burn_rate, format_duration, required_windows
from monitor.server.slo.counts import read_counts
from monitor.server.slo.spec import SLO


def _counter(name: str) -> CounterMetricFamily:
    spec = METRIC[name]
    # prometheus_client appends _total to counter sample names itself
    return CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=list(spec.labels))


def _gauge(name: str) -> GaugeMetricFamily:
    spec = METRIC[name]
    return GaugeMetricFamily(name, spec.help, labels=list(spec.labels))


class SloCollector(Collector):
    """SLO counters, objectives, budgets and burn rates of the configured SLOs."""

    def __init__(
        self,
        engine: Engine,
        slos: Sequence[SLO],
        clock: Callable[[], datetime],
        allows_model: Callable[[str], bool] = lambda _: True,
    ) -> None:
        self.engine = engine
        # A scrape with a key bound to some models sees only those models' SLOs.
        self.slos = [s for s in slos if allows_model(s.model)]
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        if not self.slos:
            return
        with self.engine.connect() as conn:
            counts = read_counts(conn, self.slos, self.clock())
        events, bad = _counter("cvmon_slo_events_total"), _counter("cvmon_slo_bad_events_total")
        objective = _gauge("cvmon_slo_objective_ratio")
        budget = _gauge("cvmon_slo_error_budget_remaining_ratio")
        burn = _gauge("cvmon_slo_burn_rate")
        for slo in self.slos:
            c = counts[slo.name]
            objective.add_metric([slo.name, slo.model], slo.objective)
            for version, vc in sorted(c.versions.items()):
                labels = [slo.name, slo.model, displayable(version)]
                events.add_metric(labels, vc.total.events)
                bad.add_metric(labels, vc.total.bad)
                budget.add_metric(labels, budget_remaining(c.window(slo.window_s, version), slo.objective))
                for w in required_windows(slo.alerts):
                    rate = burn_rate(c.window(w, version), slo.objective)
                    if rate is not None:
                        burn.add_metric([*labels, format_duration(w)], rate)
        yield from (events, bad, objective, budget, burn)
