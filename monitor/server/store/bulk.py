"""Bulk inserts: COPY on PostgreSQL (one round trip for thousands of rows), executemany on SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
    copy_rows(conn, table, columns, [tuple(row[c] for c in columns) for row in rows])


def copy_rows(conn: Connection, table: sa.Table, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Insert ``rows`` (values in the order of ``columns``) inside the caller's transaction."""
    if conn.dialect.name != "postgresql":
        values = [dict(zip(columns, row, strict=True)) for row in rows]
        if values:
            conn.execute(sa.insert(table), values)
        return
    processors = [(i, p) for i, c in enumerate(columns) if (p := table.c[c].type.bind_processor(conn.dialect)) is not None]
    raw = conn.connection.driver_connection
    names = ", ".join(f'"{c}"' for c in columns)
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy:  # type: ignore[union-attr]
        for row in rows:
            if processors:
                row = list(row)
                for i, p in processors:
                    row[i] = p(row[i])
            copy.write_row(row)
