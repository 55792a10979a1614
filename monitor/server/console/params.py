"""The controls of a page, kept in its URL so a link shows the same thing to whoever opens it:
the evaluation window, the time range (and where it ends), the version and the cohort slice.

A value the page cannot show is an error that says what it accepts, never a silent default.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from monitor.server.console.web import ConsoleError
from monitor.server.settings import parse_window

HOUR = timedelta(hours=1)
#: Time ranges a page offers, shortest first.
RANGES: dict[str, timedelta] = {
    "6h": timedelta(hours=6), "24h": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30),
    "90d": timedelta(days=90), "365d": timedelta(days=365),
}  # fmt: skip
#: A chart draws at most this many windows per line: an hourly line over a year would be 8 760
#: points and a page of megabytes, so a range is offered only where it holds few enough windows.
MAX_WINDOWS = 200


def ranges_for(window: str) -> list[str]:
    """The ranges offered for ``window``: at least two of its windows, at most :data:`MAX_WINDOWS`."""
    seconds = parse_window(window)
    return [name for name, span in RANGES.items() if 2 * seconds <= span.total_seconds() <= MAX_WINDOWS * seconds]


def default_range(window: str) -> str:
    """A day of hourly windows, a month of daily ones, a quarter of weekly ones."""
    offered = ranges_for(window)
    seconds = parse_window(window)
    wanted = "24h" if seconds <= 3600 else "30d" if seconds <= 86400 else "90d"
    return wanted if wanted in offered else (offered[-1] if offered else "7d")


def _utc(text: str, name: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ConsoleError(400, f"{name} must be a time like 2026-11-25T14:00Z, not {text[:40]!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC)


@dataclass(frozen=True)
class View:
    """A page's controls, validated against what the model has."""

    window: str
    range: str
    #: where the range ends; None: now (the end of the current hour)
    end: datetime | None
    version: str
    cohort: str
    now: datetime
    #: page-specific parameters kept in links (``at``, ``sort``, ``dir``)
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def until(self) -> datetime:
        if self.end is not None:
            return self.end
        return self.now.replace(minute=0, second=0, microsecond=0) + HOUR

    @property
    def since(self) -> datetime:
        return self.until - RANGES[self.range]

    @property
    def window_span(self) -> timedelta:
        return timedelta(seconds=parse_window(self.window))

    @property
    def version_filter(self) -> str | None:
        return self.version or None

    def params(self, **changes: Any) -> dict[str, str]:
        """The non-default parameters of this view with ``changes`` applied (None removes one)."""
        values: dict[str, Any] = {
            "window": self.window, "range": self.range,
            "end": self.end.strftime("%Y-%m-%dT%H:%MZ") if self.end else None,
            "version": self.version or None, "cohort": self.cohort or None, **self.extra,
        }  # fmt: skip
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def query(self, **changes: Any) -> str:
        return urlencode(self.params(**changes))

    def shifted(self, steps: int) -> View:
        """The same range moved by ``steps`` range lengths (negative: earlier); None end at now."""
        end = self.until + steps * RANGES[self.range]
        return replace(self, end=None if end >= self.now else end)


def parse_view(
    query: Mapping[str, str],
    *,
    windows: Sequence[str],
    versions: Sequence[str] = (),
    cohorts: Sequence[str] = (),
    now: datetime,
    extra: Sequence[str] = (),
) -> View:
    """The view of a request's query string; a :class:`ConsoleError` (400) names what is accepted."""
    default_window = "1h" if "1h" in windows else windows[0]
    window = query.get("window") or default_window
    if window not in windows:
        raise ConsoleError(400, f"window must be one of {', '.join(windows)} (the evaluated windows), not {window[:20]!r}")
    span = query.get("range") or default_range(window)
    if span not in ranges_for(window):
        span = default_range(window)
    end_text = query.get("end") or ""
    end = _utc(end_text, "end") if end_text else None
    if end is not None and end >= now:
        end = None
    version = query.get("version") or ""
    if version and version not in versions:
        raise ConsoleError(400, f"this model has no version {version[:64]!r}; its versions: {', '.join(versions) or 'none yet'}")
    cohort = query.get("cohort") or ""
    if cohort and cohort not in cohorts:
        known = ", ".join(cohorts) or "none evaluated yet"
        raise ConsoleError(400, f"no evaluated cohort slice {cohort[:80]!r}; the slices: {known}")
    kept = {name: query[name] for name in extra if query.get(name)}
    return View(window=window, range=span, end=end, version=version, cohort=cohort, now=now, extra=kept)


def parse_time(text: str, name: str) -> datetime:
    return _utc(text, name)
