"""The last run of each scheduled job per model (``job_runs``), shared by every scheduler process."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from monitor.server.store import tables as t


def record_run(
    conn: Connection, job: str, model: str, started: datetime, seconds: float, *, error: str | None, finished: datetime | None = None
) -> None:
    """Count a run of ``job`` for ``model``: its start, duration, and error (None: it succeeded at ``finished``)."""
    table = t.job_runs
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    values: dict[str, Any] = {
        "job": job,
        "model": model,
        "last_started": started,
        "last_duration_seconds": seconds,
        "last_error": error,
        "runs": 1,
        "failures": int(error is not None),
    }
    if error is None:
        values["last_success"] = finished
    stmt = insert(table).values(**values)
    update = {
        "last_started": stmt.excluded.last_started,
        "last_duration_seconds": stmt.excluded.last_duration_seconds,
        "last_error": stmt.excluded.last_error,
        "runs": table.c.runs + 1,
        "failures": table.c.failures + stmt.excluded.failures,
    }
    if error is None:
        update["last_success"] = stmt.excluded.last_success
    conn.execute(stmt.on_conflict_do_update(index_elements=[table.c.job, table.c.model], set_=update))
