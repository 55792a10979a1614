"""Window arithmetic: the one place that floors to hours and aligns windows, always in UTC.

Evaluation state is kept per hour; every window is a whole number of hours. Aligned windows
(the metric history) start at multiples of their length counted from a Monday (1970-01-05), so
1d windows start at 00:00 UTC and 7d windows on Mondays; rolling windows (what /metrics serves)
end at the end of the current hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
DAY_SECONDS = 86_400
ALIGN_ORIGIN = datetime(1970, 1, 5, tzinfo=UTC)


def hour_floor(moment: datetime) -> datetime:
    """The start of the UTC hour containing ``moment`` (which must carry a time zone: a naive
    time would be read as the machine's local time)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: times are timezone-aware (UTC)")
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hour_of(seconds: float) -> datetime:
    """The start of the UTC hour containing a Unix time in seconds."""
    return datetime.fromtimestamp(int(seconds // 3600) * 3600, UTC)


def aligned_start(moment: datetime, seconds: int) -> datetime:
    """The start of the aligned window of ``seconds`` containing ``moment``."""
    offset = int((moment - ALIGN_ORIGIN).total_seconds()) // seconds * seconds
    return ALIGN_ORIGIN + timedelta(seconds=offset)


def hours(start: datetime, end: datetime) -> Iterator[datetime]:
    """The hour starts in ``[start, end)`` (``start`` on the hour)."""
    while start < end:
        yield start
        start += HOUR


@dataclass(frozen=True, order=True)
class WindowSpan:
    """A window by its name (``1h``, ``7d``) and its bounds, ``[start, end)``."""

    name: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


def rolling(name: str, seconds: int, now: datetime) -> WindowSpan:
    """The rolling window of ``seconds`` that ends at the end of the current hour."""
    end = hour_floor(now) + HOUR
    return WindowSpan(name, end - timedelta(seconds=seconds), end)


def aligned(name: str, seconds: int, moment: datetime) -> WindowSpan:
    """The aligned window of ``seconds`` that contains ``moment``."""
    start = aligned_start(moment, seconds)
    return WindowSpan(name, start, start + timedelta(seconds=seconds))
