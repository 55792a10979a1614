"""Maintenance silences for the built-in notifier (``cvmon silence add|list|expire``).

A silence covers one model, one of its SLOs or all of them (``slo`` None), from ``starts_at`` to
``ends_at``. While it is active the notifier sends no firing notification for what it covers but
keeps evaluating and keeps the incident: when the silence ends (or is expired) and the incident
is still on, it is notified once. Silences live in the database, so every replica and worker
sees the same ones. The functions take the caller's connection and do not commit.
"""

from __future__ import annotations

import secrets
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t


@dataclass(frozen=True, slots=True)
class Silence:
    silence_id: str
    model: str
    #: None: every SLO of the model.
    slo: str | None
    starts_at: datetime
    ends_at: datetime
    created_by: str
    comment: str
    created_at: datetime

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now < self.ends_at

    def covers(self, model: str, slo: str, now: datetime) -> bool:
        """Whether this silence mutes notifications of ``slo`` of ``model`` at ``now``."""
        return self.model == model and (self.slo is None or self.slo == slo) and self.active(now)


def _silence(row: object) -> Silence:
    return Silence(**{f.name: getattr(row, f.name) for f in fields(Silence)})


def add_silence(
    conn: Connection,
    *,
    model: str,
    duration: timedelta,
    now: datetime,
    slo: str | None = None,
    created_by: str = "",
    comment: str = "",
) -> Silence:
    """Silence ``model`` (or one SLO of it) from now for ``duration``."""
    if duration <= timedelta(0):
        raise ValueError("a silence needs a positive duration")
    silence = Silence(
        silence_id=secrets.token_hex(4),
        model=model,
        slo=slo,
        starts_at=now,
        ends_at=now + duration,
        created_by=created_by[:128],
        comment=comment,
        created_at=now,
    )
    conn.execute(sa.insert(t.silences).values(**asdict(silence)))
    return silence


def list_silences(
    conn: Connection, *, now: datetime, include_expired: bool = False, model: str | None = None
) -> list[Silence]:
    """Silences, newest first: the active and future ones, or all with ``include_expired``."""
    s = t.silences.c
    query = sa.select(t.silences).order_by(s.created_at.desc(), s.silence_id)
    if not include_expired:
        query = query.where(s.ends_at > now)
    if model is not None:
        query = query.where(s.model == model)
    return [_silence(r) for r in conn.execute(query)]


def active_silences(conn: Connection, model: str, now: datetime) -> list[Silence]:
    """The silences of ``model`` in force at ``now``."""
    s = t.silences.c
    rows = conn.execute(sa.select(t.silences).where(s.model == model, s.starts_at <= now, s.ends_at > now))
    return [_silence(r) for r in rows]


def expire_silence(conn: Connection, silence_id: str, *, now: datetime) -> Silence | None:
    """End a silence now; returns it, or None when no active silence has that id."""
    s = t.silences.c
    row = conn.execute(sa.select(t.silences).where(s.silence_id == silence_id, s.ends_at > now)).first()
    if row is None:
        return None
    ends = max(now, row.starts_at)
    conn.execute(sa.update(t.silences).where(s.model == row.model, s.silence_id == silence_id).values(ends_at=ends))
    return replace(_silence(row), ends_at=ends)
