"""SLOs as the console shows them: error budget left, its burn-down over the SLO window, the burn
rate of every alert window, the notifier's incidents, and silences (added and expired here).

The numbers are the notifier's: the same per-minute counts (:func:`read_counts`) and the same
decision (:func:`evaluate_alerts`), so the page says what the notifier and the rendered Prometheus
rules decide. Functions over the caller's connection; none commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.slo.burnrate import AlertDecision, WindowCounts, budget_remaining, error_budget, evaluate_alerts
from monitor.server.slo.counts import read_counts, window_start
from monitor.server.slo.silences import Silence, add_silence, expire_silence, list_silences
from monitor.server.slo.spec import SLO
from monitor.server.store import tables as t

__all__ = ["Silence", "add_silence", "expire_silence", "silence_duration"]


def silence_duration(text: str) -> timedelta:
    """A silence's length as the CLI spells it (``30m``, ``2h``, ``3d``); ValueError otherwise."""
    from monitor.server.slo.burnrate import parse_duration

    return timedelta(seconds=parse_duration(text))


@dataclass(frozen=True, slots=True)
class AlertState:
    """One burn-rate alert of an SLO now, over the sum of versions or for one version."""

    version: str  # "" for the sum over versions
    decision: AlertDecision

    @property
    def severity(self) -> str:
        return self.decision.alert.severity

    @property
    def firing(self) -> bool:
        return self.decision.firing


@dataclass(frozen=True, slots=True)
class IncidentRow:
    """A ``notifications`` row: one incident of the built-in notifier."""

    model: str
    slo: str
    version: str
    severity: str
    state: str
    first_fired: datetime
    resolved_at: datetime | None
    last_sent: datetime | None
    resolved_sent: datetime | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class SloState:
    slo: SLO
    #: share of the error budget left over the SLO window ending now (negative: overspent)
    budget_remaining: float
    window: WindowCounts
    #: alerts over the sum of versions first, then per version (the notifier's default grouping)
    alerts: tuple[AlertState, ...]
    incidents: tuple[IncidentRow, ...]


def slo_states(conn: Connection, slos: Sequence[SLO], *, now: datetime) -> list[SloState]:
    """Budget, burn rates and incidents of each SLO in ``slos``."""
    if not slos:
        return []
    counts = read_counts(conn, slos, now)
    incidents = incidents_of(conn, sorted({s.model for s in slos}))
    out = []
    for slo in slos:
        c = counts.get(slo.name)
        window = c.window(slo.window_s) if c is not None else WindowCounts(0, 0)
        alerts: list[AlertState] = []
        if c is not None:
            alerts += [AlertState("", d) for d in evaluate_alerts(slo.objective, slo.alerts, c.alert_counts(None))]
            longest = max(a.long_window_s for a in slo.alerts)
            for version in sorted(c.versions):
                if len(c.versions) > 1 and c.window(longest, version).events > 0:
                    alerts += [AlertState(version, d) for d in evaluate_alerts(slo.objective, slo.alerts, c.alert_counts(version))]
        mine = tuple(i for i in incidents if i.model == slo.model and i.slo == slo.name)
        out.append(SloState(slo, budget_remaining(window, slo.objective), window, tuple(alerts), mine))
    return out


def incidents_of(conn: Connection, models: Sequence[str], *, since: datetime | None = None) -> list[IncidentRow]:
    """The notifier's incidents of ``models`` (firing, or resolved after ``since``), newest first."""
    if not models:
        return []
    n = t.notifications.c
    where: list[Any] = [n.model.in_(list(models))]
    if since is not None:
        where.append(sa.or_(n.resolved_at.is_(None), n.resolved_at >= since))
    rows = conn.execute(
        sa.select(n.model, n.slo, n.version, n.severity, n.state, n.first_fired, n.resolved_at, n.last_sent,
                  n.resolved_sent, n.last_error).where(*where).order_by(n.first_fired.desc(), n.slo)
    )
    return [IncidentRow(**r._mapping) for r in rows]


def burn_down(conn: Connection, slo: SLO, *, now: datetime, steps: int = 60) -> list[tuple[datetime, float]]:
    """The error budget of the SLO window ending now, as it was spent: at each of ``steps`` times
    from the window's start to now, the share of the whole window's budget not yet spent by then.
    It starts at 1 and ends at :func:`budget_remaining` of the window (the headline number)."""
    e = t.slo_events.c
    start = window_start(now, slo.window_s)
    rows = conn.execute(
        sa.select(e.minute, sa.func.sum(e.events), sa.func.sum(e.bad))
        .where(e.model == slo.model, e.slo == slo.name, e.minute >= start)
        .group_by(e.minute)
        .order_by(e.minute)
    ).all()
    total = sum(int(r[1] or 0) for r in rows)
    allowed = total * error_budget(slo.objective)
    span = (now - start) / steps
    out = []
    bad = 0
    i = 0
    for k in range(steps + 1):
        at = start + span * k
        while i < len(rows) and rows[i][0] <= at:
            bad += int(rows[i][2] or 0)
            i += 1
        out.append((at, 1.0 if allowed <= 0 else 1.0 - bad / allowed))
    return out


def silences_of(conn: Connection, model: str, *, now: datetime, expired_since: timedelta = timedelta(days=7)) -> list[Silence]:
    """The model's active and future silences, and those that ended in the last week."""
    return [s for s in list_silences(conn, now=now, include_expired=True, model=model) if s.ends_at > now - expired_since]


def silence_of(conn: Connection, model: str, silence_id: str) -> Silence | None:
    """A silence of ``model`` by id, ended or not."""
    s = t.silences.c
    row = conn.execute(sa.select(t.silences).where(s.model == model, s.silence_id == silence_id)).first()
    if row is None:
        return None
    return Silence(**{name: getattr(row, name) for name in Silence.__dataclass_fields__})
