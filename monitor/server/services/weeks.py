"""ISO weeks: a report covers Monday 00:00 UTC to the next Monday 00:00 UTC.

cvmon's 7d evaluation windows are aligned on Mondays at 00:00 UTC, so a report's week is exactly
one stored 7d window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from monitor.errors import CvmonError

WEEK: Final = timedelta(days=7)
_PATTERN: Final = re.compile(r"(\d{4})-W(\d{2})")


class WeekError(CvmonError, ValueError):
    """A week that is not an ISO week like ``2026-W47``."""


@dataclass(frozen=True, slots=True, order=True)
class Week:
    """One ISO week in UTC."""

    start: datetime

    @property
    def end(self) -> datetime:
        return self.start + WEEK

    @property
    def previous(self) -> Week:
        return Week(self.start - WEEK)

    @property
    def name(self) -> str:
        """``2026-W47``."""
        year, week, _ = self.start.date().isocalendar()
        return f"{year}-W{week:02d}"

    @classmethod
    def containing(cls, ts: datetime) -> Week:
        """The week ``ts`` falls in."""
        day = ts.astimezone(UTC).date()
        monday = day - timedelta(days=day.weekday())
        return cls(datetime(monday.year, monday.month, monday.day, tzinfo=UTC))


def parse_week(text: str) -> Week:
    """``2026-W47`` to its week; raises :class:`WeekError` with the expected form."""
    match = _PATTERN.fullmatch(text.strip())
    if match is None:
        raise WeekError(f"week {text!r} must look like 2026-W47 (ISO year and week number)")
    try:
        monday = date.fromisocalendar(int(match.group(1)), int(match.group(2)), 1)
    except ValueError:
        raise WeekError(f"{text!r} is not a week of {match.group(1)}") from None
    return Week(datetime(monday.year, monday.month, monday.day, tzinfo=UTC))


def last_complete_week(now: datetime) -> Week:
    """The latest week that has ended by ``now``: on Monday 06:00, the week that ended 6 hours ago."""
    return Week.containing(now).previous
