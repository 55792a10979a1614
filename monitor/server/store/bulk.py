"""Bulk inserts: binary COPY on PostgreSQL (one round trip for thousands of rows), executemany on
SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

#: json and jsonb: SQLAlchemy's bind processor has already made the value a JSON string, which a
#: binary jsonb dumper would encode a second time.
_JSON_OIDS = frozenset({114, 3802})


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
    """Insert ``rows`` (values in the order of ``columns``) inside the caller's transaction.

    On PostgreSQL this is a COPY in the binary format, with the column types read from the server:
    psycopg then packs each value with its binary dumper instead of formatting and escaping text
    that the server parses again (127 000 metric rows: 0.23 s instead of 1.5 s).
    """
    if conn.dialect.name != "postgresql":
        values = [dict(zip(columns, row, strict=True)) for row in rows]
        if values:
            conn.execute(sa.insert(table), values)
        return
    processors = [(i, p) for i, c in enumerate(columns) if (p := table.c[c].type.bind_processor(conn.dialect)) is not None]
    raw = conn.connection.driver_connection
    with raw.cursor() as cur:  # type: ignore[union-attr]
        oids = dict(
            cur.execute(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [table.name],
            ).fetchall()
        )
        types = [oids[c] for c in columns]
        if _JSON_OIDS.intersection(types):
            raise TypeError(f"copy_rows does not take json columns ({table.name})")
        names = ", ".join(f'"{c}"' for c in columns)
        with cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)') as copy:
            copy.set_types(types)
            for row in rows:
                if processors:
                    row = list(row)
                    for i, p in processors:
                        row[i] = p(row[i])
                copy.write_row(row)
