"""Retention: delete what is older than ``settings.retention`` (a housekeeping step).

=====================  ====================  ==============================================================
kind                   setting               PostgreSQL / SQLite
=====================  ====================  ==============================================================
embeddings             embeddings            daily partitions dropped / rows deleted by ``ts``
predictions            predictions           daily partitions dropped / rows deleted by ``ts``
ground truth           predictions           partitioned by the *prediction's* day: dropped with it
pending ground truth   predictions           rows deleted by ``received_at`` (its prediction never came)
annotations            predictions           label_annotations deleted by ``received_at``, withdrawn_labels
                                             by ``withdrawn_at``
late-label marks       predictions           label_increments, dirty_hours rows deleted by hour
hour states            eval_states           rows deleted by ``hour_start``
metric history         metric_points         rows deleted by ``window_end``
=====================  ====================  ==============================================================

On PostgreSQL the tables that grow with traffic are never deleted from row by row: a partition
goes only when its whole day is past the cutoff, so a day is kept up to one day longer than the
setting. The small tables are deleted from by time everywhere. Metric history ends with the
newest hour states: a window whose hours are partly gone is not re-reduced (late labels can only
arrive for predictions still kept, and ``eval_states`` outlives those by the longest window).

One process at a time runs this (an advisory lock on PostgreSQL); every process that runs the
scheduler calls it from ``maintenance``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from monitor.server.jobs.locks import job_lock
from monitor.server.settings import Retention
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager

log = logging.getLogger("cvmon.jobs.retention")

#: Partitioned tables and the retention setting that governs them.
PARTITIONS = {"embeddings": "embeddings", "predictions": "predictions", "ground_truth": "predictions"}


@dataclass
class RetentionResult:
    dropped_partitions: list[str] = field(default_factory=list)
    deleted_rows: dict[str, int] = field(default_factory=dict)
    skipped: bool = False

    def summary(self) -> str:
        if self.skipped:
            return "retention: running in another process"
        rows = ", ".join(f"{n} {table}" for table, n in sorted(self.deleted_rows.items()) if n)
        return f"retention: {len(self.dropped_partitions)} partitions dropped; rows deleted: {rows or 'none'}"


def apply_retention(
    engine: Engine, retention: Retention, *, now: datetime, partitions: PartitionManager | None = None
) -> RetentionResult:
    """Drop and delete everything older than the retention settings; returns what went."""
    result = RetentionResult()
    with job_lock(engine, "retention", "") as held:
        if not held:
            result.skipped = True
            return result
        pg = engine.dialect.name == "postgresql"
        partitions = partitions or PartitionManager(engine)
        for table, setting in PARTITIONS.items():
            cutoff = retention.cutoff(setting, now)
            if cutoff is None:
                continue
            if pg:
                result.dropped_partitions += partitions.drop_before(table, cutoff)
            else:
                column = t.PARTITIONED[table]
                result.deleted_rows[table] = _delete(engine, t.metadata.tables[table], column, cutoff)
        predictions = retention.cutoff("predictions", now)
        if predictions is not None:
            result.deleted_rows["ground_truth_pending"] = _delete(
                engine, t.ground_truth_pending, "received_at", predictions
            )
            result.deleted_rows["label_annotations"] = _delete(engine, t.label_annotations, "received_at", predictions)
            result.deleted_rows["withdrawn_labels"] = _delete(engine, t.withdrawn_labels, "withdrawn_at", predictions)
            result.deleted_rows["label_increments"] = _delete(engine, t.label_increments, "prediction_ts", predictions)
            result.deleted_rows["dirty_hours"] = _delete(engine, t.dirty_hours, "hour_start", predictions)
        states = retention.cutoff("eval_states", now)
        if states is not None:
            result.deleted_rows["eval_states"] = _delete(engine, t.eval_states, "hour_start", states)
        history = retention.cutoff("metric_points", now)
        if history is not None:
            result.deleted_rows["metric_points"] = _delete(engine, t.metric_points, "window_end", history)
    if result.dropped_partitions or any(result.deleted_rows.values()):
        log.info(result.summary())
    return result


def _delete(engine: Engine, table: sa.Table, column: str, cutoff: datetime) -> int:
    with write_transaction(engine) as conn:
        return int(conn.execute(sa.delete(table).where(table.c[column] < cutoff)).rowcount or 0)
