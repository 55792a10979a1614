"""Number and time formatting shared by the verdicts and the templates (Jinja filters).

Thousands are grouped with a narrow no-break space (``1 240``), as SI and most of Europe write
them and no reader mistakes it for a decimal point; negative numbers use the minus sign (−).
Undefined values (None) print as an en dash.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Final

NNBSP: Final = "\u202f"
MINUS: Final = "\u2212"
NONE: Final = "–"


def _defined(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _sign(text: str) -> str:
    return MINUS + text[1:] if text.startswith("-") else text


def num(value: float | None) -> str:
    """A count: ``1 240``."""
    if not _defined(value):
        return NONE
    return _sign(f"{round(value):,}".replace(",", NNBSP))  # type: ignore[arg-type]


def pct(value: float | None, digits: int = 1) -> str:
    """A share: ``91.2%``."""
    if not _defined(value):
        return NONE
    return _sign(f"{value * 100:.{digits}f}%")  # type: ignore[operator]


def points(delta: float | None, digits: int = 1) -> str:
    """A change of a share in percentage points, signed: ``−6.1 points``."""
    if not _defined(delta):
        return NONE
    return _sign(f"{delta * 100:+.{digits}f} points")  # type: ignore[operator]


def signed_pct(delta: float | None, digits: int = 1) -> str:
    """A change of a share in points, compact for tables: ``−6.1``."""
    if not _defined(delta):
        return NONE
    return _sign(f"{delta * 100:+.{digits}f}")  # type: ignore[operator]


def relative(current: float | None, previous: float | None) -> str:
    """Relative change: ``+35%``."""
    if not (_defined(current) and _defined(previous)) or previous == 0:
        return NONE
    return _sign(f"{(current / previous - 1) * 100:+.0f}%")  # type: ignore[operator]


def decimal(value: float | None, digits: int = 3) -> str:
    """A small number such as ECE or a drift score: ``0.031``."""
    if not _defined(value):
        return NONE
    return _sign(f"{value:.{digits}f}")


def signed_decimal(delta: float | None, digits: int = 3) -> str:
    if not _defined(delta):
        return NONE
    return _sign(f"{delta:+.{digits}f}")


def money(value: float | None, currency: str | None = None) -> str:
    """An amount with three significant digits below 100 (cost per 1 000 inferences are often
    fractions of a cent): ``0.0508 USD``, ``0.00725 USD``, ``12.4 EUR``, ``1 240 USD``."""
    if not _defined(value):
        return NONE
    assert value is not None
    if value == 0:
        text = "0"
    elif abs(value) >= 100:
        text = num(value)
    else:
        digits = max(0, 2 - math.floor(math.log10(abs(value))))
        text = _sign(f"{value:.{digits}f}")
    return f"{text} {currency}" if currency else text


def ms(value: float | None) -> str:
    """A latency in milliseconds: ``23 ms``, ``4.2 ms``, ``1.2 s``."""
    if not _defined(value):
        return NONE
    assert value is not None
    if value >= 1000:
        return f"{value / 1000:.1f} s"
    return f"{value:.1f} ms" if value < 10 else f"{value:.0f} ms"


def duration(seconds: float | None) -> str:
    """A delay: ``45 min``, ``6.5 h``, ``2.1 days``."""
    if not _defined(seconds):
        return NONE
    assert seconds is not None
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def when(ts: datetime) -> str:
    """A time within the week: ``Tue 14:00`` (UTC)."""
    return ts.strftime("%a %H:%M")


def day(ts: datetime) -> str:
    """A date: ``Mon 16 Nov 2026``."""
    return ts.strftime("%a %d %b %Y")


def stamp(ts: datetime) -> str:
    """A full timestamp: ``2026-11-23 06:00 UTC``."""
    return ts.strftime("%Y-%m-%d %H:%M UTC")
