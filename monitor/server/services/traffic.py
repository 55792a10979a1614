"""When a model had traffic: what ``cvmon report`` says when the chosen week had none.

A function over the caller's connection; it never commits.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t


def week_name(moment: datetime) -> str:
    """The ISO week holding ``moment``, as reports are named (``2026-W47``)."""
    from monitor.server.services.weeks import Week

    return Week.containing(moment).name


def traffic_span(conn: Connection, model: str) -> tuple[datetime, datetime] | None:
    """The first and the last prediction time of ``model`` over its versions; None without any."""
    v = t.model_versions.c
    first, last = conn.execute(
        sa.select(sa.func.min(v.first_seen), sa.func.max(v.last_seen)).where(v.model == model, v.predictions > 0)
    ).one()
    if first is None or last is None:
        return None
    return first, last
