"""Path and query parameters as bounded types.

Every parameter parses into a value the database and datetime arithmetic can hold — text without
NUL or lone surrogates and of bounded length, windows of whole hours up to a bound, paging offsets
in range, times inside the calendar — or the request is a 422 that says what is allowed. The
routers declare these types and never see anything else.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import HTTPException, Path, Query, status
from pydantic import AfterValidator

from monitor.errors import ConfigError
from monitor.server.settings import parse_window
from monitor.wire import MAX_MODEL_CHARS, MODEL_NAME_PATTERN, text_problem

#: The longest window a query may merge (the confusion matrix): a year of hour states.
MAX_QUERY_WINDOW_SECONDS: Final = 366 * 86400
#: Paging offsets past this are not ones the API gave out (10 000 points a page, 200 000 pages).
MAX_CURSOR_OFFSET: Final = 2_000_000_000


def storable_text(value: str | None) -> str | None:
    """A pydantic validator: text the database can store (see :func:`monitor.wire.text_problem`)."""
    if value is None:
        return None
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _storable_list(values: list[str] | None) -> list[str] | None:
    for value in values or ():
        storable_text(value)
    return values


def _moment(value: datetime | None) -> datetime | None:
    """An aware UTC time (a time without an offset is read as UTC) inside years 1-9999 in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is outside the years 1-9999 once converted to UTC") from None


Stored = AfterValidator(storable_text)

ModelName = Annotated[
    str,
    Path(min_length=1, max_length=MAX_MODEL_CHARS, pattern=MODEL_NAME_PATTERN,
         description="The model: a letter or digit, then letters, digits, '.', '_', ':' or '-'."),
]  # fmt: skip
ReportId = Annotated[str, Path(pattern=r"^([0-9]{4}-W[0-9]{2}|latest)$", description="ISO week (2026-W47) or `latest`.")]

WindowText = Annotated[str, Query(max_length=12, description="Window length: 1h, 1d, 7d (as configured)."), Stored]
VersionText = Annotated[str | None, Query(max_length=64, description="Only this model version."), Stored]
CohortText = Annotated[
    str | None, Query(max_length=321, description='A cohort slice "key:value"; "" for whole versions.'), Stored
]
MetricList = Annotated[
    list[str] | None,
    Query(max_length=64, description="Only these metrics (repeatable), e.g. accuracy, precision."),
    AfterValidator(_storable_list),
]
ClassText = Annotated[str | None, Query(alias="class", max_length=128, description="Only this class."), Stored]
Moment = Annotated[datetime | None, AfterValidator(_moment)]
Limit = Annotated[int, Query(ge=1, le=10_000, description="Points of `series` per page (1 to 10 000).")]
Cursor = Annotated[
    str | None, Query(max_length=16, pattern=r"^[A-Za-z0-9_=-]*$", description="From `next_cursor` of the previous page.")
]


def _unprocessable(message: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, message)


def window_seconds(text: str, *, allowed: tuple[str, ...] | None = None) -> int:
    """The length of ``text`` in seconds: one of ``allowed`` when given, else any whole number of
    hours, days or weeks up to a year."""
    if allowed is not None and text not in allowed:
        raise _unprocessable(f"window {text!r} is not evaluated here; use one of {', '.join(allowed)}")
    try:
        seconds = parse_window(text)
    except ConfigError as exc:
        raise _unprocessable(str(exc)) from None
    if seconds > MAX_QUERY_WINDOW_SECONDS:
        raise _unprocessable(f"window {text!r} is longer than a year (366d); use a shorter window")
    return seconds


def cohort_slice(text: str | None) -> tuple[str, str] | None:
    """``"key:value"`` to ``(key, value)``; None for no filter or ``""``."""
    if text is None or text == "":
        return None
    key, sep, value = text.partition(":")
    if not sep or not key:
        raise _unprocessable("cohort must look like key:value, e.g. camera:cam-3")
    if len(key) > 64:
        raise _unprocessable("a cohort key is at most 64 characters")
    return key, value


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def decode_cursor(text: str | None) -> int:
    """The offset a ``next_cursor`` stands for; 422 for anything the API did not give out."""
    if not text:
        return 0
    try:
        digits = base64.urlsafe_b64decode(text.encode()).decode("ascii")
    except (ValueError, binascii.Error, UnicodeDecodeError):
        digits = ""
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_CURSOR_OFFSET:
        raise _unprocessable("cursor is not one this API gave out: pass `next_cursor` of the previous page unchanged")
    return int(digits)
