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
sample images          samples.models.*      rows deleted by ``captured_at``, then their objects; day folders
                       .retention            of the object store past the cutoff swept (orphans included)
sample access log      samples.              rows deleted by ``at`` (the exported counters keep their totals)
                       audit_retention
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
from datetime import datetime, timedelta

from sqlalchemy import Engine

from monitor.server.jobs.locks import job_lock
from monitor.server.sample_settings import ModelSamplePolicy
from monitor.server.services import retention as svc
from monitor.server.services import samples as sample_svc
from monitor.server.services.sample_audit import forget_access_before
from monitor.server.services.samples import SampleRuntime
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


def expire_samples(engine: Engine, runtime: SampleRuntime, *, now: datetime) -> dict[str, int]:
    """Delete samples past their model's retention (rows, then objects, then whole day folders of
    the store) and access rows past ``samples.audit_retention``; returns counts by kind."""
    out = {"samples": 0, "objects": 0, "sample_access": 0}
    default = ModelSamplePolicy().retention  # a model no longer opted in keeps its samples this long
    with job_lock(engine, "samples-retention", "") as held:
        if not held:
            return out
        with engine.connect() as conn:
            models = sample_svc.models_with_samples(conn)
        for model in models:
            policy = runtime.settings.policy(model)
            keep = policy.retention if policy is not None else default
            if keep is None:
                continue
            cutoff = now - timedelta(seconds=keep)
            while True:
                with write_transaction(engine) as conn:
                    keys = sample_svc.expire(conn, model, cutoff)
                runtime.store.delete(keys)  # after the commit: a reader of a deleted row finds no object, never the reverse
                out["samples"] += len(keys)
                out["objects"] += len(keys)
                if len(keys) < 5000:
                    break
            out["objects"] += sample_svc.sweep_days(runtime.store, model, cutoff)
        if runtime.settings.audit_retention is not None:
            with write_transaction(engine) as conn:
                out["sample_access"] = forget_access_before(conn, now - timedelta(seconds=runtime.settings.audit_retention))
    if any(out.values()):
        log.info("samples retention: %d samples, %d objects, %d access rows deleted", out["samples"], out["objects"], out["sample_access"])
    return out

