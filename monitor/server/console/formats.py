"""How numbers and times read on the console's pages (Jinja2 filters)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

DASH = "—"


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def pct(value: float | None, digits: int = 1) -> str:
    """A share as a percentage: ``0.9321`` -> ``93.2 %``."""
    return f"{value * 100:.{digits}f} %" if _defined(value) else DASH  # type: ignore[operator]


def points(value: float | None) -> str:
    """A change of a share in percentage points, signed: ``-0.052`` -> ``−5.2 pp``."""
    if not _defined(value):
        return DASH
    return f"{value * 100:+.1f} pp".replace("-", "\u2212")  # type: ignore[operator]


def count(value: float | None) -> str:
    """A count with thin-space thousands: ``12345`` -> ``12 345``."""
    if value is None:
        return DASH
    return f"{int(value):,}".replace(",", "\u202f")


def number(value: float | None, digits: int = 3) -> str:
    """A score with ``digits`` significant digits."""
    return f"{value:.{digits}g}" if _defined(value) else DASH  # type: ignore[str-format]


def ms(value: float | None) -> str:
    return f"{value:.1f} ms" if _defined(value) else DASH  # type: ignore[str-format]


def when(value: datetime | None) -> str:
    """A UTC time to the minute: ``2026-11-25 14:05 UTC``."""
    return DASH if value is None else f"{value:%Y-%m-%d %H:%M} UTC"


def iso(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%dT%H:%MZ")


def ago(value: datetime | None, now: datetime) -> str:
    """How long before ``now``: ``3 min ago``, ``5 h ago``, ``2 d ago``."""
    if value is None:
        return "never"
    seconds = (now - value).total_seconds()
    if seconds < 0:
        return "in " + ago(now, value)[:-4]
    if seconds < 90:
        return f"{int(seconds)} s ago"
    if seconds < 5400:
        return f"{round(seconds / 60)} min ago"
    if seconds < 2 * 86400:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


def duration(seconds: float | None) -> str:
    """``3600`` -> ``1h``; ``300`` -> ``5m``; ``86400 * 3`` -> ``3d``."""
    if seconds is None:
        return DASH
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def rate(value: float | None) -> str:
    """A burn rate: ``14.4×``."""
    return f"{value:.2f}×" if _defined(value) else DASH  # type: ignore[str-format]


FILTERS: dict[str, Callable[..., Any]] = {
    "pct": pct, "points": points, "count": count, "number": number, "ms": ms, "when": when, "iso": iso,
    "ago": ago, "duration": duration, "rate": rate,
}  # fmt: skip
