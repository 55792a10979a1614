"""Metric history and the confusion matrix: GET /v1/models/{model}/metrics, /confusion-matrix."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel

from monitor.server.api.deps import ReadAuth, StateDep
from monitor.server.api.params import (
    ClassText,
    CohortText,
    Cursor,
    Limit,
    MetricList,
    ModelName,
    Moment,
    VersionText,
    WindowText,
    cohort_slice,
    decode_cursor,
    encode_cursor,
    window_seconds,
)
from monitor.server.api.schemas import problems
from monitor.server.services.history import MetricFilter, confusion_matrix, history_points, latest_points
from monitor.server.services.models import model_spec
from monitor.server.services.windows import hour_floor

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


def _shift(moment: datetime, delta: timedelta) -> datetime:
    """``moment + delta``, or a 422 when that leaves the years 1-9999 (e.g. end=0001-01-01)."""
    try:
        return moment + delta
    except OverflowError:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, f"{moment.isoformat()} is out of range for this window") from None


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
    window: WindowText = "1h",
    version: VersionText = None,
    cohort: CohortText = None,
    metric: MetricList = None,
    cls: ClassText = None,
    since: Annotated[Moment, Query(description="Series from this time (default: 7 days before until).")] = None,
    until: Annotated[Moment, Query(description="Series until this time (default: now).")] = None,
    limit: Limit = 1000,
    cursor: Cursor = None,
) -> MetricsOut:
    """The latest values (rolling window ending at the current hour) and the time series of
    aligned windows, with sample counts and label coverage on every point."""
    principal.check_model(model)
    window_seconds(window, allowed=state.settings.query_windows)
    until = until or state.clock()
    since = since or _shift(until, -timedelta(days=7))
    offset = decode_cursor(cursor)
    slice_ = cohort_slice(cohort)

    which = MetricFilter(
        model, window, version, None if cohort is None else (slice_ or ("", "")), tuple(metric or ()), cls
    )
    with state.engine.connect() as conn:
        if model_spec(conn, model) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
        latest = latest_points(conn, which)
        series = history_points(conn, which, since, until, offset=offset, limit=limit + 1)
    more = len(series) > limit
    next_cursor = encode_cursor(offset + limit) if more else None
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
    window: Annotated[WindowText, Query(description="Window length: 1h to 366d, whole hours.")] = "1d",
    version: Annotated[VersionText, Query(description="Only this version (default: all versions together).")] = None,
    cohort: Annotated[CohortText, Query(description='A cohort slice "key:value" (default: everything).')] = None,
    end: Annotated[Moment, Query(description="Window end (default: the end of the current hour).")] = None,
) -> ConfusionOut:
    """Rows are the true class, columns the predicted class, over the window ending at `end`,
    merged from the stored hourly states (classification models)."""
    principal.check_model(model)
    seconds = window_seconds(window)
    slice_ = cohort_slice(cohort)
    window_end = _shift(hour_floor(end or state.clock()), timedelta(hours=1) if end is None else timedelta(0))
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

