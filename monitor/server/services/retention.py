"""Retention over a Connection: which rows are past their setting, deleted in the caller's
transaction. The retention job (:mod:`monitor.server.jobs.retention`) takes the lock, drops whole
partitions on PostgreSQL and calls these for the rest; its docstring has the table of what goes
when."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t

#: Partitioned tables and the retention setting that governs them.
PARTITIONS = {"embeddings": "embeddings", "predictions": "predictions", "ground_truth": "predictions"}
#: Small tables deleted from by time: table -> (retention setting, time column).
ROWS = {
    "ground_truth_pending": ("predictions", "received_at"),
    "label_annotations": ("predictions", "received_at"),
    "withdrawn_labels": ("predictions", "withdrawn_at"),
    "label_increments": ("predictions", "prediction_ts"),
    "dirty_hours": ("predictions", "hour_start"),
    "eval_states": ("eval_states", "hour_start"),
    "metric_points": ("metric_points", "window_end"),
}


def delete_before(conn: Connection, table: str, column: str, cutoff: datetime) -> int:
    """Delete the rows of ``table`` whose ``column`` is before ``cutoff``; returns how many."""
    target = t.metadata.tables[table]
    return int(conn.execute(sa.delete(target).where(target.c[column] < cutoff)).rowcount or 0)


def delete_partition_rows(conn: Connection, table: str, cutoff: datetime) -> int:
    """SQLite: delete the rows of a table that is partitioned on PostgreSQL."""
    return delete_before(conn, table, t.PARTITIONED[table], cutoff)


def oldest_prediction(conn: Connection) -> datetime | None:
    """The time of the oldest stored prediction (None when there is none)."""
    return conn.execute(sa.select(sa.func.min(t.predictions.c.ts))).scalar()


def forget_identities(conn: Connection, before: datetime) -> int:
    """Delete the identities of predictions that are gone (timed before ``before``, the oldest
    prediction still stored): an identity outlives no prediction, and is never dropped while its
    prediction is kept."""
    return delete_before(conn, "prediction_ids", "ts", before)
