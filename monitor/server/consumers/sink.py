"""Where consumed records go: the ingest service, exactly as the HTTP API calls it.

This is the one module of the consumers that imports the ingest service, so that the service can
move (or start taking the caller's connection) with one change here. A call of :meth:`Sink.write`
stores one batch of one kind in one transaction: when it returns, the records are committed, and
the messages they came from may be acknowledged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final, Literal

import sqlalchemy.exc
from sqlalchemy import Engine

from monitor.server.services.ingest import (
    MAX_RECORDS,
    CohortPolicy,
    IngestResult,
    batch_records,
    ingest_ground_truth,
    ingest_predictions,
    record_models,
)
from monitor.server.settings import Settings
from monitor.server.store.partitions import PartitionManager

__all__ = ["MAX_RECORDS", "IngestResult", "Kind", "Sink", "batch_records", "is_transient", "record_models"]

Kind = Literal["predictions", "ground_truth"]
KINDS: Final[tuple[Kind, ...]] = ("predictions", "ground_truth")


class Sink:
    """Stores batches of records through the ingest service, with the server's settings (PII
    policy, SLO event counting, retention cutoff, partitions)."""

    def __init__(self, engine: Engine, settings: Settings, *, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.partitions = PartitionManager(engine)
        self.policy = CohortPolicy(settings)

    def prepare(self) -> None:
        """Create the partitions ahead, as ``cvmon serve`` does at start."""
        self.partitions.ensure_ahead(self.clock(), self.settings.partition_days_ahead)

    def write(self, kind: Kind, records: Sequence[Any]) -> IngestResult:
        """Validate and store ``records`` (at most :data:`MAX_RECORDS`) in one transaction."""
        now = self.clock()
        if kind == "predictions":
            return ingest_predictions(
                self.engine,
                records,
                now=now,
                partitions=self.partitions,
                policy=self.policy,
                slos=self.settings.slos,
                oldest=self.settings.retention.cutoff("predictions", now),
            )
        return ingest_ground_truth(self.engine, records, now=now, slos=self.settings.slos)


def _transient_errors() -> tuple[type[Exception], ...]:
    # The errors the API answers with 503 (database away, pool exhausted, a lock or serialisation
    # conflict): worth waiting for, never a reason to drop a message.
    errors: list[type[Exception]] = [
        sqlalchemy.exc.OperationalError,
        sqlalchemy.exc.InterfaceError,
        sqlalchemy.exc.TimeoutError,
        sqlalchemy.exc.DisconnectionError,
    ]
    try:
        import psycopg
    except ImportError:  # pragma: no cover - SQLite-only installs without the driver
        return tuple(errors)
    return (*errors, psycopg.OperationalError, psycopg.InterfaceError)


_TRANSIENT: Final = _transient_errors()


def is_transient(exc: BaseException) -> bool:
    """Whether a failed write should be retried later (the database is away or busy)."""
    return isinstance(exc, _TRANSIENT)
