"""Bulk inserts: binary COPY on PostgreSQL (one round trip for thousands of rows), executemany on
SQLite."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import psycopg
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
    that the server parses again (several times faster for metric rows).
    """
    if conn.dialect.name != "postgresql":
        values = [dict(zip(columns, row, strict=True)) for row in rows]
        if values:
            conn.execute(sa.insert(table), values)
        return
    target = _CopyTarget(conn, table, columns)
    with target.cursor, target.cursor.copy(target.statement) as copy:
        copy.set_types(target.types)
        for row in target.bound(rows):
            copy.write_row(row)


class _CopyTarget:
    """What a binary COPY into ``table`` needs: the statement, the columns' type oids (read from
    the server) and SQLAlchemy's bind processors of the columns that have one."""

    def __init__(self, conn: Connection, table: sa.Table, columns: Sequence[str]) -> None:
        self.table = table.name
        self.processors = [(i, p) for i, c in enumerate(columns) if (p := table.c[c].type.bind_processor(conn.dialect)) is not None]
        self.cursor: psycopg.Cursor[Any] = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        oids = dict(
            self.cursor.execute(
                "SELECT attname, atttypid::int FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
                [table.name],
            ).fetchall()
        )
        self.types = [oids[c] for c in columns]
        if _JSON_OIDS.intersection(self.types):
            raise TypeError(f"copy_rows does not take json columns ({table.name})")
        names = ", ".join(f'"{c}"' for c in columns)
        self.statement = f'COPY "{table.name}" ({names}) FROM STDIN (FORMAT BINARY)'

    def bound(self, rows: Iterable[Sequence[Any]]) -> Iterator[Sequence[Any]]:
        if not self.processors:
            yield from rows
            return
        for row in rows:
            row = list(row)
            for i, p in self.processors:
                row[i] = p(row[i])
            yield row
