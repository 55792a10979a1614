"""Weekly reports: GET /v1/models/{model}/reports and /v1/models/{model}/reports/{id}."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from pydantic import BaseModel

from monitor.server.api.deps import ReadAuth, StateDep
from monitor.server.api.params import ModelName, ReportId
from monitor.server.api.schemas import Problem
from monitor.server.services.models import model_specs
from monitor.server.services.reports import find_report, latest_report_id, list_reports, report_html

router = APIRouter(prefix="/v1", tags=["reports"])

#: What the report needs and nothing more: inline styles and inline SVG; no script, no fetch,
#: no frame, no form. Even a name that slipped past escaping could not run or load anything.
CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "private, max-age=300",
}
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Problem}, 403: {"model": Problem}, 404: {"model": Problem}}



class ReportOut(BaseModel):
    id: str
    week: str
    period_start: datetime
    period_end: datetime
    generated_at: datetime
    size_bytes: int
    #: where the HTML is served
    url: str


class ReportList(BaseModel):
    model: str
    #: newest week first
    reports: list[ReportOut]


@router.get(
    "/models/{model}/reports", response_model=ReportList, responses=_ERRORS, summary="Stored weekly reports of a model"
)
async def get_reports(model: ModelName, state: StateDep, principal: ReadAuth) -> ReportList:
    """The weekly HTML reports kept for the model (``reports.retention_weeks``), newest first."""
    principal.check_model(model)

    def read() -> ReportList:
        with state.engine.connect() as conn:
            if not model_specs(conn, [model]):
                raise HTTPException(status.HTTP_404_NOT_FOUND, f"no model {model!r}")
            stored = list_reports(conn, model)
        return ReportList(
            model=model,
            reports=[
                ReportOut(
                    id=r.report_id,
                    week=r.week,
                    period_start=r.period_start,
                    period_end=r.period_end,
                    generated_at=r.generated_at,
                    size_bytes=r.size_bytes,
                    url=f"/v1/models/{model}/reports/{r.report_id}",
                )
                for r in stored
            ],
        )

    return await run_in_threadpool(read)


@router.get(
    "/models/{model}/reports/{report_id}",
    response_class=Response,
    responses={
        **_ERRORS,
        200: {"content": {"text/html": {}}, "description": "The report, a self-contained HTML page."},
    },
    summary="One weekly report (HTML)",
)
async def get_report(model: ModelName, report_id: ReportId, state: StateDep, principal: ReadAuth) -> Response:
    """The report of one ISO week (or the newest, ``latest``) as a self-contained HTML page, served
    with a Content-Security-Policy that forbids scripts and every external resource."""
    principal.check_model(model)

    def read() -> tuple[str, bytes] | None:
        with state.engine.connect() as conn:
            wanted = latest_report_id(conn, model) if report_id == "latest" else report_id
            if wanted is None or find_report(conn, model, wanted) is None:
                return None
            html = report_html(conn, model, wanted)
            return None if html is None else (wanted, html)

    found = await run_in_threadpool(read)
    if found is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no report {report_id!r} for model {model!r}")
    week, html = found
    headers = {**_HEADERS, "Content-Disposition": f'inline; filename="cvmon-{model}-{week}.html"'}
    return Response(content=html, media_type="text/html; charset=utf-8", headers=headers)
