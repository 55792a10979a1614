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
prediction identities  predictions           rows deleted once their prediction is gone
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

from sqlalchemy import Engine

from monitor.server.jobs.locks import job_lock
from monitor.server.services import retention as svc
from monitor.server.settings import Retention
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager

log = logging.getLogger("cvmon.jobs.retention")


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
        for table, setting in svc.PARTITIONS.items():
            cutoff = retention.cutoff(setting, now)
            if cutoff is None:
                continue
            if pg:
                result.dropped_partitions += partitions.drop_before(table, cutoff)
            else:
                with write_transaction(engine) as conn:
                    result.deleted_rows[table] = svc.delete_partition_rows(conn, table, cutoff)
        for table, (setting, column) in svc.ROWS.items():
            cutoff = retention.cutoff(setting, now)
            if cutoff is not None:
                with write_transaction(engine) as conn:
                    result.deleted_rows[table] = svc.delete_before(conn, table, column, cutoff)
        if (cutoff := retention.cutoff("predictions", now)) is not None:
            # ingest refuses predictions older than the cutoff, so none older can commit meanwhile
            with write_transaction(engine) as conn:
                oldest = svc.oldest_prediction(conn)
                result.deleted_rows["prediction_ids"] = svc.forget_identities(conn, min(oldest or cutoff, cutoff))
    if result.dropped_partitions or any(result.deleted_rows.values()):
        log.info(result.summary())
    return result

