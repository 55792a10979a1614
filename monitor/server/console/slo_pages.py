"""The SLO page (budgets, burn-down, burn rates, incidents, silences added and expired here), the
incident timeline of a model, its weekly reports, and the predictions behind a confusion cell."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from monitor.server.api.deps import StateDep
from monitor.server.console import charts
from monitor.server.console.auth import ViewerDep, require_change
from monitor.server.console.context import ModelContext, check_name, model_page
from monitor.server.console.model_charts import drift_window
from monitor.server.console.model_pages import page
from monitor.server.console.params import RANGES, parse_time
from monitor.server.console.timeline_svg import timeline_chart
from monitor.server.console.web import (
    SECURITY_HEADERS,
    ConsoleError,
    check_csrf,
    check_origin,
    json_response,
    read_form,
)
from monitor.server.reports.charts import Threshold
from monitor.server.services.console_data import cell_predictions, report_of, reports_of
from monitor.server.services.console_slo import (
    add_silence,
    burn_down,
    expire_silence,
    silence_duration,
    silence_of,
    silences_of,
    slo_states,
)
from monitor.server.services.timeline import timeline
from monitor.server.services.traffic import week_name
from monitor.server.store.engine import write_transaction

router = APIRouter(include_in_schema=False)

#: Durations the silence form offers (any ``30m`` / ``2h`` / ``3d`` is accepted).
INCIDENT_RANGES = ("7d", "30d", "90d")
SILENCE_DURATIONS = ("30m", "1h", "2h", "4h", "8h", "1d", "3d", "7d")


@router.get("/models/{model}/slos")
def slos_page(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="slos") as (conn, c):
        now = state.clock()
        mine = [s for s in c.settings.slos if s.model == c.model]
        states = slo_states(conn, mine, now=now)
        views = []
        for st in states:
            down = burn_down(conn, st.slo, now=now)
            line = charts.Line("budget left", tuple((t, v, 0) for t, v in down))
            chart = charts.Chart(key=f"burn:{st.slo.name}", title=f"Error budget of {st.slo.name} over its {st.slo.window} window",
                                 unit="share", start=down[0][0], end=down[-1][0], window=timedelta(0), lines=(line,),
                                 thresholds=(Threshold(0.0, "budget spent"),))  # fmt: skip
            views.append({"state": st, "burn_down": charts.render_static(chart)})
        silences = silences_of(conn, c.model, now=now)
    return page(request, c, "model_slos.html.j2", slos=views, silences=silences, now=now, durations=SILENCE_DURATIONS,
                slo_names=[s.name for s in mine], notice=request.query_params.get("done", ""))  # fmt: skip


@router.post("/models/{model}/silences")
async def add(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    check_origin(request)
    form = await read_form(request)
    check_csrf(viewer.csrf, form)
    require_change(viewer)
    check_name(model)
    if not viewer.sees(model):
        raise ConsoleError(404, f"no model {model!r} that this key may see")
    slo = form.get("slo") or None
    known = {s.name for s in state.settings.slos if s.model == model}
    if slo is not None and slo not in known:
        raise ConsoleError(400, f"model {model!r} has no SLO {slo[:100]!r}; its SLOs: {', '.join(sorted(known)) or 'none'}")
    try:
        duration = silence_duration(form.get("duration", ""))
    except ValueError as exc:
        raise ConsoleError(400, f"duration: {exc}") from None
    if duration > timedelta(days=90):
        raise ConsoleError(400, "a silence lasts at most 90d; add another when it ends")
    comment = form.get("comment", "").strip()[:500]
    who = viewer.principal.key.name if viewer.principal.key else "console (auth disabled)"

    def store() -> str:
        with write_transaction(state.engine) as conn:
            silence = add_silence(conn, model=model, slo=slo, duration=duration, now=state.clock(),
                                  created_by=f"{who} (console)", comment=comment)  # fmt: skip
        return silence.silence_id

    silence_id = await run_in_threadpool(store)
    return RedirectResponse(f"/models/{quote(model, safe='')}/slos?done=added+{silence_id}#silences", status_code=303)


@router.post("/models/{model}/silences/{silence_id}/expire")
async def expire(model: str, silence_id: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    check_origin(request)
    form = await read_form(request)
    check_csrf(viewer.csrf, form)
    require_change(viewer)
    check_name(model)
    if not viewer.sees(model):
        raise ConsoleError(404, f"no model {model!r} that this key may see")

    def end() -> bool:
        with write_transaction(state.engine) as conn:
            # the id must be one of this model's: a key bound to it cannot end another model's silence
            if silence_of(conn, model, silence_id) is None:
                raise ConsoleError(404, f"model {model!r} has no silence {silence_id[:20]!r}")
            return expire_silence(conn, silence_id, now=state.clock()) is not None

    ended = await run_in_threadpool(end)
    done = f"expired+{silence_id}" if ended else f"already+ended+{silence_id}"
    return RedirectResponse(f"/models/{quote(model, safe='')}/slos?done={done}#silences", status_code=303)


def timeline_context(events: list[Any], since: Any, until: Any, *, fleet: bool) -> dict[str, Any]:
    return {"events": events, "timeline": timeline_chart(events, since, until, fleet=fleet), "since": since, "until": until,
            "fleet": fleet}


@router.get("/models/{model}/incidents")
def incidents_page(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    chosen = request.query_params.get("range") or "7d"
    if chosen not in INCIDENT_RANGES:  # a shorter range of the other tabs: the timeline's shortest
        chosen = "7d"
    with model_page(request, state, viewer, model, tab="incidents") as (conn, c):
        until = state.clock()
        since = until - RANGES[chosen]
        events = timeline(conn, [c.model], since=since, until=until, drift_window=drift_window(c))
    return page(request, c, "model_incidents.html.j2", range=chosen, **timeline_context(events, since, until, fleet=False))


@router.get("/models/{model}/reports")
def reports_page(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="reports") as (conn, c):
        stored = reports_of(conn, c.model)
    week = week_name(state.clock())
    return page(request, c, "model_reports.html.j2", reports=stored, week=week)


@router.get("/models/{model}/reports/{report_id}")
def report_view(model: str, report_id: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    with model_page(request, state, viewer, model, tab="reports") as (conn, c):
        html = report_of(conn, c.model, report_id[:32])
    if html is None:
        raise ConsoleError(404, f"no stored report {report_id[:32]!r} of {model!r}")
    # the report is self-contained: its own inline CSS, no script, nothing to fetch
    headers = {**SECURITY_HEADERS, "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'"}
    return Response(html, media_type="text/html; charset=utf-8", headers=headers)


def _cell(request: Request, state: StateDep, viewer: ViewerDep, model: str) -> tuple[ModelContext, dict[str, Any]]:
    with model_page(request, state, viewer, model, tab="classes", extra=("at", "true", "pred")) as (conn, c):
        if c.task != "classification":
            raise ConsoleError(400, "a detection model has no confusion matrix")
        text = c.view.extra.get("at")
        if not text:
            raise ConsoleError(400, "at: the start of the window is required (the matrix's cells link with it)")
        start = parse_time(text, "at")
        n = len(c.info.spec.classes)
        try:
            true, pred = int(c.view.extra.get("true", "")), int(c.view.extra.get("pred", ""))
        except ValueError:
            raise ConsoleError(400, "true and pred are class indices (rows and columns of the matrix)") from None
        if not (0 <= true < n and 0 <= pred < n):
            raise ConsoleError(400, f"true and pred are class indices from 0 to {n - 1}")
        rows = cell_predictions(conn, c.model, start=start, end=start + c.view.window_span, true_class=true,
                                predicted_class=pred, version=c.view.version_filter, cohort=c.view.cohort)  # fmt: skip
    classes = c.info.spec.classes
    # not "true": a Jinja2 template reads that name as the literal True
    return c, {"start": start, "end": start + c.view.window_span, "true_class": classes[true], "pred_class": classes[pred],
               "rows": rows}


@router.get("/models/{model}/predictions")
def predictions_page(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    c, data = _cell(request, state, viewer, model)
    return page(request, c, "model_predictions.html.j2", json_url=f"{c.base}/predictions.json?{c.view.query()}", **data)


@router.get("/models/{model}/predictions.json")
def predictions_json(model: str, request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    """The labelled predictions of one confusion cell (newest first, at most 200)."""
    c, data = _cell(request, state, viewer, model)
    return json_response({
        "model": c.model, "window": c.view.window, "window_start": data["start"].isoformat(), "window_end": data["end"].isoformat(),
        "version": c.view.version, "cohort": c.view.cohort, "true_class": data["true_class"], "predicted_class": data["pred_class"],
        "predictions": [{"prediction_id": r.prediction_id, "timestamp": r.ts.isoformat(), "version": r.version,
                         "cohort": r.cohort, "confidence": r.confidence, "latency_ms": r.latency_ms,
                         "labelled_at": r.labelled_at.isoformat()} for r in data["rows"]],
    })  # fmt: skip
