"""Metric history and the confusion matrix: GET /v1/models/{model}/metrics, /confusion-matrix."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from monitor.server.api.deps import ReadAuth, StateDep
from monitor.server.api.models import ModelName
from monitor.server.api.schemas import problems
from monitor.server.services.history import MetricFilter, confusion_matrix, history_points, latest_points
from monitor.server.services.models import model_spec
from monitor.server.services.windows import hour_floor
from monitor.server.settings import parse_window

router = APIRouter(prefix="/v1", tags=["metrics"])

_ERRORS = problems(401, 403, 404, 422, 503)


class MetricPoint(BaseModel):
    metric: str
    #: class name, reliability bin ("0.133") or confusion cell; "" for whole-slice metrics
    cls: str
    version: str
    #: "" for the whole version, else "key:value" (e.g. "camera:cam-3")
    cohort: str
    window_start: datetime
    window_end: datetime
    #: null when undefined (e.g. precision of a class never predicted), never 0
    value: float | None
    sample_count: int
    label_coverage: float | None


class MetricsOut(BaseModel):
    model: str
    window: str
    #: rolling window ending at the end of the current hour: what /metrics exports
    latest: list[MetricPoint]
    #: aligned windows (1h on the hour, 1d at 00:00 UTC, 7d on Mondays) in [since, until)
    series: list[MetricPoint]
    #: pass as `cursor` to get the next page of `series`; null on the last page
    next_cursor: str | None


class ConfusionOut(BaseModel):
    model: str
    window: str
    version: str
    cohort: str
    window_start: datetime
    window_end: datetime
    classes: list[str]
    #: rows true class, columns predicted class
    matrix: list[list[int]]
    samples: int


def _cohort(text: str | None) -> tuple[str, str] | None:
    if text is None or text == "":
        return None
    key, sep, value = text.partition(":")
    if not sep or not key:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cohort must look like key:value, e.g. camera:cam-3")
    return key, value


def _window(text: str) -> int:
    try:
        return parse_window(text)
    except ValueError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None


def _cursor(text: str | None) -> int:
    if not text:
        return 0
    try:
        return int(base64.urlsafe_b64decode(text.encode()).decode())
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "cursor is not one this API gave out") from None


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, or a 422 when that leaves the years 1-9999 (e.g. end=0001-01-01)."""
    try:
        return moment + delta
    except OverflowError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{moment.isoformat()} is out of range for this window") from None


def _utc(moment: datetime) -> datetime:
    """In UTC, or a 422 when that leaves the years 1-9999 (0001-01-01T00:00+01:00)."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{moment.isoformat()} is out of range") from None


def _point(r: Any) -> MetricPoint:
    return MetricPoint(
        metric=r.metric, cls=r._mapping["class"], version=r.version,
        cohort=f"{r.cohort_key}:{r.cohort_value}" if r.cohort_key else "",
        window_start=r.window_start, window_end=r.window_end, value=r.value,
        sample_count=r.sample_count, label_coverage=r.label_coverage,
    )  # fmt: skip


@router.get("/models/{model}/metrics", response_model=MetricsOut, responses=_ERRORS, summary="Metric history of a model")
def get_metrics(
    model: ModelName,
    state: StateDep,
    principal: ReadAuth,
    window: Annotated[str, Query(description="Window length: 1h, 1d, 7d (as configured).")] = "1h",
    version: Annotated[str | None, Query(description="Only this model version.")] = None,
    cohort: Annotated[str | None, Query(description='Only this cohort slice, "key:value"; "" for whole versions.')] = None,
    metric: Annotated[list[str] | None, Query(description="Only these metrics (repeatable), e.g. accuracy, precision.")] = None,
    cls: Annotated[str | None, Query(alias="class", description="Only this class.")] = None,
    since: Annotated[datetime | None, Query(description="Series from this time (default: 7 days before until).")] = None,
    until: Annotated[datetime | None, Query(description="Series until this time (default: now).")] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    cursor: Annotated[str | None, Query(description="From `next_cursor` of the previous page.")] = None,
) -> MetricsOut:
    """The latest values (rolling window ending at the current hour) and the time series of
    aligned windows, with sample counts and label coverage on every point."""
    principal.check_model(model)
    _window(window)
    if any("\x00" in text for text in (version or "", cohort or "", cls or "", *(metric or ()))):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "query parameters must not contain NUL characters")
    until = _utc(until or state.clock())
    since = _utc(since or _shift(until, -timedelta(days=7)))
    offset = _cursor(cursor)
    slice_ = _cohort(cohort)
    which = MetricFilter(
        model, window, version, None if cohort is None else (slice_ or ("", "")), tuple(metric or ()), cls
    )
    with state.engine.connect() as conn:
        if model_spec(conn, model) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
        latest = latest_points(conn, which)
        series = history_points(conn, which, since, until, offset=offset, limit=limit + 1)
    more = len(series) > limit
    next_cursor = base64.urlsafe_b64encode(str(offset + limit).encode()).decode() if more else None
    return MetricsOut(
        model=model, window=window, latest=[_point(r) for r in latest],
        series=[_point(r) for r in series[:limit]], next_cursor=next_cursor,
    )  # fmt: skip


@router.get(
    "/models/{model}/confusion-matrix", response_model=ConfusionOut, responses=_ERRORS, summary="Confusion matrix of a window"
)
async def get_confusion_matrix(
    model: ModelName,
    state: StateDep,
    principal: ReadAuth,
    window: Annotated[str, Query(description="Window length: 1h, 1d, 7d.")] = "1d",
    version: Annotated[str | None, Query(description="Only this version (default: all versions together).")] = None,
    cohort: Annotated[str | None, Query(description='A cohort slice "key:value" (default: everything).')] = None,
    end: Annotated[datetime | None, Query(description="Window end (default: the end of the current hour).")] = None,
) -> ConfusionOut:
    """Rows are the true class, columns the predicted class, over the window ending at `end`,
    merged from the stored hourly states (classification models)."""
    principal.check_model(model)
    seconds = _window(window)
    slice_ = _cohort(cohort)
    window_end = _shift(hour_floor(_utc(end or state.clock())), timedelta(hours=1) if end is None else timedelta(0))
    window_start = _shift(window_end, -timedelta(seconds=seconds))

    def compute() -> ConfusionOut:
        with state.engine.connect() as conn:
            spec = model_spec(conn, model)
            if spec is None:
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
            if spec.task != "classification":
                raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{model!r} is a detection model; see its per-class AP in /metrics")
            cm = confusion_matrix(conn, spec, window_start, window_end, version=version, cohort=slice_)
        return ConfusionOut(
            model=model, window=window, version=version or "", cohort=cohort or "", window_start=window_start,
            window_end=window_end, classes=list(cm.classes), matrix=cm.matrix, samples=cm.samples,
        )  # fmt: skip

    return await run_in_threadpool(compute)

