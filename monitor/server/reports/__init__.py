"""Weekly HTML reports: one small, self-contained file per model and ISO week.

The pipeline, each step in its own module::

    data = build_report_data(conn, model, week_start, settings=..., clock=...)   # build.py: reads through services
    html = render_report(data)                                                    # render.py: pure

* :mod:`.data` -- the report data: frozen dataclasses.
* :mod:`.build` -- ``build_report_data``: aggregates the week and the one before from what the
  services read (:mod:`monitor.server.services.history`, ``.evaluation``, ``.reports``).
* :mod:`.views` -- pure: orderings, derived tables, and when a change is significant.
* :mod:`.verdicts` -- pure: the one-line verdict of each section, the week's notable changes and
  the Actions list, following the runbook guidance.
* :mod:`.charts` -- pure: inline SVG (line charts with thresholds, heat map, reliability diagram,
  sparklines); every text escaped, no script.
* :mod:`.render` -- Jinja2 (autoescaped) templates shipped in ``templates/``; CSS inline.
* :mod:`.fmt` -- number and time formatting (also the template filters).

Stored reports are :mod:`monitor.server.services.reports`'s; ISO weeks
:mod:`monitor.server.services.weeks`'; the ``reports:`` settings :mod:`monitor.server.report_settings`.
"""
