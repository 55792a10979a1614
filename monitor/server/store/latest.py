"""Writes to ``metric_latest``, the rolling windows /metrics serves.

Every change to a model's rows goes through :func:`replace_latest`, which raises the model's
counter in ``metric_latest_generations`` in the same transaction: a reader that sees the counter
unchanged knows the model's rows are unchanged (what lets /metrics keep rendered series per
process), and one that sees it move reads the rows again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.store import tables as t
from monitor.server.store.bulk import bulk_insert


def replace_latest(
    conn: Connection, model: str, windows: Sequence[str], metrics: sa.ColumnElement[bool], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Replace the rows of ``model`` in ``windows`` whose metric matches ``metrics`` with ``rows``
    (in the caller's transaction)."""
    ml = t.metric_latest.c
    conn.execute(sa.delete(t.metric_latest).where(ml.model == model, ml.window.in_(windows), metrics))
    bulk_insert(conn, t.metric_latest, rows)
    bump_generation(conn, model)


def bump_generation(conn: Connection, model: str) -> None:
    """Raise the model's counter (the row lock also orders two writers of one model)."""
    g = t.metric_latest_generations
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = insert(g).values(model=model, generation=1)
    conn.execute(stmt.on_conflict_do_update(index_elements=[g.c.model], set_={"generation": g.c.generation + 1}))


def generations(conn: Connection) -> dict[str, int]:
    """Every model's counter."""
    g = t.metric_latest_generations.c
    return {m: n for m, n in conn.execute(sa.select(g.model, g.generation))}
