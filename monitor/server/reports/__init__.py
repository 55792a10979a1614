"""Weekly HTML reports: one small, self-contained file per model and ISO week.

The pipeline, each step in its own module::

    data = build_report_data(engine, model, week_start, settings=..., clock=...)   # build.py: the only reads
    html = render_report(data)                                                      # render.py: pure

* :mod:`.data` -- the report data: frozen dataclasses.
* :mod:`.build` -- ``build_report_data``: reads the database, aggregates the week and the one before.
* :mod:`.views` -- pure: orderings, derived tables, and when a change is significant.
* :mod:`.verdicts` -- pure: the one-line verdict of each section, the week's notable changes and
  the Actions list, following the runbook guidance.
* :mod:`.charts` -- pure: inline SVG (line charts with thresholds, heat map, reliability diagram,
  sparklines); every text escaped, no script.
* :mod:`.render` -- Jinja2 (autoescaped) templates shipped in ``templates/``; CSS inline.
* :mod:`.store` -- keeping reports in the ``reports`` table, listing them, retention.
* :mod:`.weeks` -- ISO weeks (``2026-W47``) and their periods.
* :mod:`.fmt` -- number and time formatting (also the template filters).
* :mod:`.config` -- the ``reports:`` settings (day, time, retention).

Only :mod:`.config` and :mod:`.weeks` are imported here: ``Settings.load`` needs the settings
without the database and templating stack.
"""

from monitor.server.reports.config import ReportSettings, load_report_settings
from monitor.server.reports.weeks import Week, last_complete_week, parse_week

__all__ = ["ReportSettings", "Week", "last_complete_week", "load_report_settings", "parse_week"]
