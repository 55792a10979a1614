"""Bulk inserts: COPY on PostgreSQL (one round trip for thousands of rows), executemany on SQLite."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection


def bulk_insert(conn: Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) into ``table`` inside the caller's transaction."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(sa.insert(table), list(rows))
        return
    columns = list(rows[0])
    processors = [table.c[c].type.bind_processor(conn.dialect) for c in columns]
    raw = conn.connection.driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:  # type: ignore[union-attr]
        for row in rows:
            copy.write_row([v if p is None else p(v) for v, p in zip((row[c] for c in columns), processors, strict=True)])
