"""Window arithmetic: one hour_floor, in UTC whatever the input's zone; aligned windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from monitor.server.services.windows import (
    HOUR,
    WindowSpan,
    aligned,
    aligned_start,
    hour_floor,
    hour_of,
    hours,
    rolling,
)

BERLIN = timezone(timedelta(hours=1))


def test_hour_floor_is_the_utc_hour_whatever_the_zone() -> None:
    assert hour_floor(datetime(2026, 11, 20, 10, 59, 59, 999999, tzinfo=UTC)) == datetime(2026, 11, 20, 10, tzinfo=UTC)
    # 00:30 in UTC+1 is 23:30 UTC the day before: a floor in the local zone would be an hour off
    assert hour_floor(datetime(2026, 11, 21, 0, 30, tzinfo=BERLIN)) == datetime(2026, 11, 20, 23, tzinfo=UTC)
    # a 30-minute offset: the local hour and the UTC hour start at different minutes
    assert hour_floor(datetime(2026, 11, 20, 10, 45, tzinfo=timezone(timedelta(minutes=330)))) == datetime(2026, 11, 20, 5, tzinfo=UTC)
    assert hour_of(datetime(2026, 11, 20, 10, 45, tzinfo=UTC).timestamp()) == datetime(2026, 11, 20, 10, tzinfo=UTC)


def test_a_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        hour_floor(datetime(2026, 11, 20, 10, 30))


@pytest.mark.parametrize(
    ("seconds", "moment", "start"),
    [
        pytest.param(3600, datetime(2026, 11, 20, 10, 30, tzinfo=UTC), datetime(2026, 11, 20, 10, tzinfo=UTC), id="hour"),
        pytest.param(86400, datetime(2026, 11, 20, 23, 59, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC), id="day-at-midnight-utc"),
        pytest.param(7 * 86400, datetime(2026, 11, 22, 12, tzinfo=UTC), datetime(2026, 11, 16, tzinfo=UTC), id="week-on-monday"),
        pytest.param(6 * 3600, datetime(2026, 11, 20, 13, tzinfo=UTC), datetime(2026, 11, 20, 12, tzinfo=UTC), id="six-hours"),
    ],
)
def test_aligned_windows(seconds: int, moment: datetime, start: datetime) -> None:
    assert aligned_start(moment, seconds) == start
    span = aligned("w", seconds, moment)
    assert span == WindowSpan("w", start, start + timedelta(seconds=seconds)) and span.seconds == seconds


def test_rolling_windows_end_with_the_current_hour() -> None:
    span = rolling("1d", 86400, datetime(2026, 11, 20, 10, 30, tzinfo=UTC))
    assert (span.start, span.end) == (datetime(2026, 11, 19, 11, tzinfo=UTC), datetime(2026, 11, 20, 11, tzinfo=UTC))
    assert list(hours(span.start, span.start + 3 * HOUR)) == [span.start + k * HOUR for k in range(3)]
