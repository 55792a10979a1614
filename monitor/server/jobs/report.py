"""The weekly ``report`` job: last week's HTML report of a model, stored, and old ones pruned.

The scheduler runs it on a cron trigger (``reports.day`` at ``reports.time`` UTC, see
``monitor.server.report_settings``), not every tick. Several scheduler processes all fire the
trigger; the job lock runs them one after the other and every run after the first finds the
week's report already written after the week ended, and skips. ``cvmon report --store`` replaces
a stored report on demand (late labels, a changed SLO).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from monitor.server.services.reports import find_report, prune_reports, save_report
from monitor.server.services.triggers import report_ready
from monitor.server.services.weeks import last_complete_week
from monitor.server.settings import Settings
from monitor.server.store.engine import write_transaction


def report(engine: Engine, model: str, *, settings: Settings, clock: Callable[[], datetime]) -> str:
    """Write the report of the last complete week of ``model`` unless it exists; apply retention."""
    from monitor.server.reports.build import build_report_data
    from monitor.server.reports.render import render_report

    week = last_complete_week(clock())
    with engine.connect() as conn:
        existing = find_report(conn, model, week.name)
    retention = settings.reports.retention_weeks
    if existing is not None and existing.generated_at >= week.end:
        with write_transaction(engine) as conn:
            removed = prune_reports(conn, model, newest=week, retention_weeks=retention)
        return f"report {week.name} exists (generated {existing.generated_at:%Y-%m-%d %H:%M}); {removed} old removed"
    data = build_report_data(engine, model, week.start, settings=settings, clock=clock)
    html = render_report(data)
    with write_transaction(engine) as conn:
        stored = save_report(conn, model, week, html, generated_at=data.generated_at)
        removed = prune_reports(conn, model, newest=week, retention_weeks=retention)
        report_ready(conn, settings, model=model, week=week.name, period_start=week.start, size_bytes=stored.size_bytes, now=clock())
    return f"report {week.name} written ({stored.size_bytes / 1024:.0f} KiB); {removed} old removed"
