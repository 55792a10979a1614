"""The built-in notifier's incidents and the SLO event sums of a period, as the reports and the
console read them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t


def firing(conn: Connection, model: str) -> dict[str, set[str]]:
    """SLO name -> the severities (page, ticket) of its incidents firing now."""
    n = t.notifications.c
    out: dict[str, set[str]] = defaultdict(set)
    for name, severity in conn.execute(sa.select(n.slo, n.severity).where(n.model == model, n.state == "firing")):
        out[name].add(severity)
    return dict(out)


def event_sums(conn: Connection, model: str, slos: Sequence[str], start: datetime, end: datetime) -> dict[str, tuple[float, float]]:
    """SLO name -> (events, bad events) counted in ``[start, end)``."""
    e = t.slo_events.c
    query = (
        sa.select(e.slo, sa.func.sum(e.events), sa.func.sum(e.bad))
        .where(e.model == model, e.slo.in_(list(slos)), e.minute >= start, e.minute < end)
        .group_by(e.slo)
    )
    return {name: (float(events or 0), float(bad or 0)) for name, events, bad in conn.execute(query)}
