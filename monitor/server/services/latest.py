"""What /metrics reads: the rolling windows in ``metric_latest`` and the per-model counters.

The exporter (:mod:`monitor.server.exporters.collectors`) renders these; the evaluate and drift
jobs write them (:mod:`monitor.server.services.evaluation`, :mod:`monitor.server.services.drift`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.server.store import tables as t
from monitor.server.store.latest import generations

__all__ = ["generations", "job_runs", "latest_values", "version_counters"]


def latest_values(conn: Connection, models: Sequence[str], metrics: Sequence[str]) -> list[Any]:
    """(model, window, version, cohort_key, cohort_value, metric, class, value) of the models'
    rolling-window rows of ``metrics`` that have a value."""
    ml = t.metric_latest.c
    return list(
        conn.execute(
            sa.select(ml.model, ml.window, ml.version, ml.cohort_key, ml.cohort_value, ml.metric, ml["class"], ml.value).where(
                ml.model.in_(models), ml.metric.in_(list(metrics)), ml.value.is_not(None)
            )
        ).all()
    )


def version_counters(conn: Connection) -> list[Any]:
    """(model, version, predictions, errors, labelled) of every model version."""
    v = t.model_versions.c
    return list(conn.execute(sa.select(v.model, v.version, v.predictions, v.errors, v.labelled)).all())


def job_runs(conn: Connection) -> list[Any]:
    """The last run of each job per model."""
    return list(conn.execute(sa.select(t.job_runs)).all())
