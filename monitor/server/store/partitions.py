"""Daily range partitions on PostgreSQL: created ahead, on demand for backfills, dropped by retention.

A partition is ``<table>_pYYYYMMDD`` covering ``[day, day + 1)`` in UTC. Creation runs in its own
short transaction under an advisory lock so concurrent replicas don't race on the DDL; the
ingest path asks only for days it has not seen yet (an in-process cache), so the steady state
costs nothing.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, OperationalError

from monitor.server.store.tables import PARTITIONED

log = logging.getLogger("cvmon.store")

#: Rows a process writes into one day's predictions before it first analyses the partition; it
#: analyses again each time its count doubles.
ANALYZE_FIRST_ROWS = 1000

#: pg_advisory_xact_lock key for partition DDL ("cvmonpar" as ASCII).
_DDL_LOCK = 0x63766D6F6E706172


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


class PartitionManager:
    """Creates missing daily partitions; remembers which exist (per process)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: set[date] = set()
        self._lock = threading.Lock()
        self.enabled = engine.dialect.name == "postgresql"
        #: rows this process wrote per day, and the count at which it analyses that day next
        self._written: Counter[date] = Counter()
        self._analyze_at: dict[date, int] = {}

    def ensure_days(self, days: Iterable[date]) -> None:
        if not self.enabled:
            return
        missing = sorted(set(days) - self._known)
        if not missing:
            return
        with self._lock, self.engine.begin() as conn:
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK})
            for day in missing:
                nxt = day + timedelta(days=1)
                for table in PARTITIONED:
                    conn.execute(
                        text(
                            f'CREATE TABLE IF NOT EXISTS "{partition_name(table, day)}" PARTITION OF "{table}" '
                            f"FOR VALUES FROM ('{day.isoformat()} 00:00:00+00') TO ('{nxt.isoformat()} 00:00:00+00')"
                        )
                    )
        self._known.update(missing)

    def note_written(self, stamps: Iterable[datetime]) -> None:
        """Keep the planner's statistics of the days being filled current: ANALYZE a day's
        ``predictions`` partition after this process's first 1 000 rows in it, then whenever its
        count doubles (a dozen times for a million rows a day).

        Why cvmon does what autovacuum should: the evaluation reads a day's rows by hour, and a
        partition never analysed is planned as if empty, which can turn index probes into scans of
        the whole day. Autovacuum analyses a partition only after it is noticed (and not at all
        where it is off); bulk loads and backfills fill a day faster than that.
        """
        if not self.enabled:
            return
        batch = Counter(ts.astimezone(UTC).date() for ts in stamps)
        due = []
        with self._lock:
            self._written.update(batch)
            for day in batch:
                if self._written[day] >= self._analyze_at.get(day, ANALYZE_FIRST_ROWS):
                    self._analyze_at[day] = 2 * self._written[day]
                    due.append(day)
        for day in due:
            try:
                with self.engine.connect() as conn:
                    conn.execute(text("SET LOCAL lock_timeout = '1s'"))  # never queue behind a partition drop
                    conn.execute(text(f'ANALYZE "{partition_name("predictions", day)}"'))
                    conn.commit()
            except DBAPIError as exc:  # the batch is stored whatever happens here; the next doubling tries again
                log.warning("could not analyse the predictions of %s: %s", day, exc.orig)

    def ensure_timestamps(self, stamps: Iterable[datetime]) -> None:
        self.ensure_days({ts.astimezone(UTC).date() for ts in stamps})

    def ensure_ahead(self, now: datetime, days_ahead: int, days_back: int = 1) -> None:
        today = now.astimezone(UTC).date()
        self.ensure_days(today + timedelta(days=d) for d in range(-days_back, days_ahead + 1))

    def drop_before(self, table: str, cutoff: datetime, *, lock_timeout_ms: int = 5000) -> list[str]:
        """Drop the daily partitions of ``table`` that end at or before ``cutoff``; returns their names.

        Whole partitions go with ``DROP TABLE`` (no row-by-row DELETE, no bloat, no VACUUM). The
        drop needs a brief ACCESS EXCLUSIVE lock on the parent table; ``lock_timeout`` bounds how
        long it may queue behind a long reader (and hold up writers queued behind it): a partition
        whose lock is not granted in time is left for the next housekeeping run.
        """
        if not self.enabled:
            return []
        last = cutoff.astimezone(UTC).date()  # partitions of days before this one end by the cutoff
        dropped = []
        for day in self.existing_days(table):
            if day >= last:
                break
            name = partition_name(table, day)
            try:
                with self._lock, self.engine.begin() as conn:
                    conn.execute(text(f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}"))
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _DDL_LOCK})
                    conn.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            except OperationalError as exc:
                if "lock timeout" not in str(exc):
                    raise
                break  # busy: the rest waits for the next run, oldest first
            self._known.discard(day)
            self._written.pop(day, None)
            self._analyze_at.pop(day, None)
            dropped.append(name)
        return dropped

    def forget(self) -> None:
        """Drop the cache (after retention dropped partitions, or a 'no partition' error)."""
        self._known.clear()

    def existing_days(self, table: str) -> list[date]:
        """Days that have a partition of ``table``, oldest first."""
        if not self.enabled:
            return []
        with self.engine.connect() as conn:
            names = conn.execute(
                text(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = :t"
                ),
                {"t": table},
            ).scalars()
            prefix = f"{table}_p"
            return sorted(
                datetime.strptime(n[len(prefix) :], "%Y%m%d").date() for n in names if n.startswith(prefix)
            )
