"""Who looked at which sample, and the running counts /metrics exports.

Every view (the image, with or without overlays) and every export of a sample writes one row to
``sample_access`` in the transaction that serves it: the caller commits before the bytes leave,
so no sample is seen without its row. A view of a sample stored unmasked (``exposed``: its
model's policy is ``keep`` for faces or plates) is a PII exposure event, the seed's M11 SLI,
exported as ``cvmon_pii_exposure_events_total``.

The counts live in ``sample_counts``, raised in the same transactions as what they count and never
lowered, so deleting old samples or old access rows never turns an exported counter back.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.store import tables as t

#: The counters of ``sample_counts``.
COUNTS: Final = ("stored", "dropped_faces", "dropped_plates", "dropped_residual", "views", "exports", "exposures")
ACTIONS: Final = ("view", "export")


def bump(conn: Connection, model: str, counts: Mapping[str, int]) -> None:
    """Add to a model's counters (names from :data:`COUNTS`), one statement per counter in name
    order (every writer takes these rows in the same order)."""
    rows = [{"model": model, "name": name, "value": int(n)} for name, n in sorted(counts.items()) if n]
    if not rows:
        return
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    for row in rows:
        stmt = insert(t.sample_counts).values(**row)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=["model", "name"], set_={"value": t.sample_counts.c.value + stmt.excluded.value}
        ))  # fmt: skip


def counts(conn: Connection) -> list[tuple[str, str, int]]:
    """``(model, counter, value)`` of every model."""
    c = t.sample_counts.c
    return [(r.model, r.name, int(r.value)) for r in conn.execute(sa.select(c.model, c.name, c.value).order_by(c.model, c.name))]


@dataclass(frozen=True, slots=True)
class Accessed:
    """A sample about to be served: what the access row needs."""

    sample_id: str
    exposed: bool


def record_access(
    conn: Connection, model: str, samples: Sequence[Accessed], *, principal: str, action: str, detail: str, now: datetime
) -> None:
    """Log that ``principal`` is being served these samples (``action``: view or export)."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}")
    if not samples:
        return
    conn.execute(sa.insert(t.sample_access), [
        {"model": model, "at": now, "access_id": secrets.token_hex(8), "sample_id": s.sample_id,
         "principal": principal[:128], "action": action, "exposed": s.exposed, "detail": detail[:256]}
        for s in samples
    ])  # fmt: skip
    exposures = sum(s.exposed for s in samples)
    bump(conn, model, {"views" if action == "view" else "exports": len(samples), "exposures": exposures})


@dataclass(frozen=True, slots=True)
class AccessRow:
    at: datetime
    sample_id: str
    principal: str
    action: str
    exposed: bool
    detail: str


def access_log(
    conn: Connection, model: str, *, since: datetime | None = None, sample_id: str | None = None, limit: int = 500
) -> list[AccessRow]:
    """The newest access rows of a model (of one sample when ``sample_id`` is given)."""
    a = t.sample_access.c
    query = sa.select(a.at, a.sample_id, a.principal, a.action, a.exposed, a.detail).where(a.model == model)
    if since is not None:
        query = query.where(a.at >= since)
    if sample_id is not None:
        query = query.where(a.sample_id == sample_id)
    rows = conn.execute(query.order_by(a.at.desc(), a.access_id).limit(limit))
    return [AccessRow(r.at, r.sample_id, r.principal, r.action, bool(r.exposed), r.detail) for r in rows]


def forget_access_before(conn: Connection, cutoff: datetime) -> int:
    """Delete access rows older than ``cutoff`` (the counters keep their totals)."""
    a = t.sample_access
    return int(conn.execute(sa.delete(a).where(a.c.at < cutoff)).rowcount or 0)
