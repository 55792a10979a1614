"""Model-quality SLOs: the spec in cvmon.yaml, error-budget and burn-rate maths, Prometheus rules.

* :mod:`.spec` -- ``load_slos(text, source)``: the validated ``slos:`` of cvmon.yaml.
* :mod:`.burnrate` -- pure maths on event counts: error budget, burn rate, the workbook's
  multiwindow recipe as budget fractions, detection times, and ``evaluate_alerts`` and ``hold``
  (the hysteresis), the decision the rendered rules and cvmon's built-in notifier share.
* :mod:`.render` -- the Prometheus recording and alerting rules ``cvmon slo render`` writes.
* :mod:`.promtool` -- running Prometheus' promtool on rule files.

The database half (imported where needed, not here):

* :mod:`.events` -- which stored predictions and labels are events; counted by the ingest writes.
* :mod:`.slices` -- time-slice events (ece, drift, map) of evaluated hours.
* :mod:`.counts` -- the per-minute counts over windows (exporter and notifier), and folding.
* :mod:`.notifier`, :mod:`.receivers`, :mod:`.silences` -- the built-in notifier.
* :mod:`.jobs` -- the ``slo`` and ``notify`` jobs.

docs/slo.md explains the semantics.
"""

from monitor.server.slo.burnrate import (
    AlertDecision,
    AlertState,
    BurnAlert,
    WindowCounts,
    budget_remaining,
    burn_rate,
    default_alerts,
    detection_time_s,
    error_budget,
    evaluate_alerts,
    hold,
    required_windows,
)
from monitor.server.slo.render import ALERT_NAME, render_rules, write_rules
from monitor.server.slo.spec import SLIS, SLO, load_slos

__all__ = [
    "ALERT_NAME",
    "SLIS",
    "SLO",
    "AlertDecision",
    "AlertState",
    "BurnAlert",
    "WindowCounts",
    "budget_remaining",
    "burn_rate",
    "default_alerts",
    "detection_time_s",
    "error_budget",
    "evaluate_alerts",
    "hold",
    "load_slos",
    "render_rules",
    "required_windows",
    "write_rules",
]
