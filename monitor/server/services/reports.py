"""Stored reports: one row per model and ISO week in the ``reports`` table.

The report id is the week (``2026-W47``): regenerating a week replaces its report, and the id reads
well in a URL. Retention deletes reports whose week started more than ``retention_weeks`` weeks
before the newest complete week.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.services.weeks import Week
from monitor.server.store import tables as t


@dataclass(frozen=True, slots=True)
class StoredReport:
    """A stored report without its HTML."""

    model: str
    report_id: str
    week: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    size_bytes: int


def _info(row: sa.Row) -> StoredReport:  # type: ignore[type-arg]
    return StoredReport(
        row.model, row.report_id, row.week, row.period_start, row.period_end, row.generated_at, row.size_bytes
    )


_INFO_COLUMNS = (
    t.reports.c.model,
    t.reports.c.report_id,
    t.reports.c.week,
    t.reports.c.period_start,
    t.reports.c.period_end,
    t.reports.c.generated_at,
    t.reports.c.size_bytes,
)


def save_report(conn: Connection, model: str, week: Week, html: str, *, generated_at: datetime) -> StoredReport:
    """Store (or replace) the report of ``model`` for ``week``, in the caller's transaction."""
    r = t.reports.c
    body = html.encode("utf-8")
    conn.execute(sa.delete(t.reports).where(r.model == model, r.report_id == week.name))
    conn.execute(
        sa.insert(t.reports).values(
            model=model,
            report_id=week.name,
            week=week.name,
            period_start=week.start,
            period_end=week.end,
            generated_at=generated_at,
            size_bytes=len(body),
            html=body,
        )
    )
    return StoredReport(model, week.name, week.name, week.start, week.end, generated_at, len(body))


def list_reports(conn: Connection, model: str) -> list[StoredReport]:
    """The stored reports of ``model``, newest week first."""
    r = t.reports.c
    query = sa.select(*_INFO_COLUMNS).where(r.model == model).order_by(r.period_start.desc())
    return [_info(row) for row in conn.execute(query)]


def find_report(conn: Connection, model: str, report_id: str) -> StoredReport | None:
    r = t.reports.c
    row = conn.execute(sa.select(*_INFO_COLUMNS).where(r.model == model, r.report_id == report_id)).first()
    return None if row is None else _info(row)


def report_html(conn: Connection, model: str, report_id: str) -> bytes | None:
    """The stored HTML (UTF-8), or None."""
    r = t.reports.c
    value = conn.execute(sa.select(r.html).where(r.model == model, r.report_id == report_id)).scalar()
    return None if value is None else bytes(value)


def latest_report_id(conn: Connection, model: str) -> str | None:
    r = t.reports.c
    return conn.execute(  # type: ignore[no-any-return]
        sa.select(r.report_id).where(r.model == model).order_by(r.period_start.desc()).limit(1)
    ).scalar()


def prune_reports(conn: Connection, model: str, *, newest: Week, retention_weeks: int) -> int:
    """Delete the reports of weeks starting ``retention_weeks`` or more weeks before ``newest``:
    with 12 weeks, the newest report and the 11 before it stay. Returns how many went."""
    r = t.reports.c
    cutoff = newest.start - timedelta(weeks=retention_weeks - 1)
    result = conn.execute(sa.delete(t.reports).where(r.model == model, r.period_start < cutoff))
    return int(result.rowcount or 0)
