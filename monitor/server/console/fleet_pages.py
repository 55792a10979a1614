"""The fleet page (every model this key may see, what needs attention first), the fleet's incident
timeline, the fleet's JSON, and the console's own static files."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from monitor.server.api.deps import StateDep
from monitor.server.console import charts
from monitor.server.console.auth import ViewerDep
from monitor.server.console.params import RANGES
from monitor.server.console.slo_pages import timeline_context
from monitor.server.console.web import HERE, SECURITY_HEADERS, ConsoleError, json_response, render
from monitor.server.services.console_data import all_models
from monitor.server.services.fleet import FleetRow, fleet
from monitor.server.services.timeline import timeline
from monitor.server.settings import parse_window

router = APIRouter(include_in_schema=False)

#: The files under static/ (nothing else is served from there).
STATIC = {"console.css": "text/css; charset=utf-8", "console.js": "text/javascript; charset=utf-8"}


def _rows(request: Request, state: StateDep, viewer: ViewerDep) -> list[FleetRow]:
    with state.engine.connect() as conn:
        visible = [m for m in all_models(conn) if viewer.sees(m)]
        return fleet(conn, visible, settings=state.settings, now=state.clock())


@router.get("/")
def fleet_page(request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    rows = _rows(request, state, viewer)
    sparks = {r.model: charts.spark(r.spark, f"hourly {r.quality_metric} of {r.model}, last 24 h", share=False) for r in rows}
    budgets = {r.model: charts.budget(r.budget_left, f"error budget left: {r.budget_left:.0%}") for r in rows if r.budget_left is not None}
    return render(request, "fleet.html.j2", {"viewer": viewer, "rows": rows, "sparks": sparks, "budgets": budgets,
                                             "now": state.clock(), "title": "Fleet · cvmon"})  # fmt: skip


@router.get("/fleet.json")
def fleet_json(request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    """The fleet page's rows as JSON (the models this key may see)."""
    rows = _rows(request, state, viewer)
    return json_response({"models": [_row_json(r) for r in rows]})


def _row_json(r: FleetRow) -> dict[str, Any]:
    return {
        "model": r.model, "task": r.task, "versions": list(r.versions), "versions_live": list(r.versions_live),
        "predictions_hour": r.predictions_hour, "predictions_day": r.predictions_day, "label_coverage": r.label_coverage,
        "quality": {"metric": r.quality_metric, "window": r.quality_window, "value": r.quality.value, "samples": r.quality.n,
                    "hourly": list(r.spark), "week_change": r.week_change},
        "slos": [{"slo": s.slo.name, "budget_remaining": s.budget_remaining,
                  "firing": sorted({a.severity for a in s.alerts if a.firing})} for s in r.slos],
        "drift": [{"version": f.version, "cohort": f.cohort, "detector": f.detector} for f in r.drift],
        "jobs": [{"job": j.job, "last_success": j.last_success.isoformat() if j.last_success else None, "failing": j.failing}
                 for j in r.jobs],
    }  # fmt: skip


@router.get("/incidents")
def fleet_incidents(request: Request, state: StateDep, viewer: ViewerDep) -> Response:
    chosen = request.query_params.get("range") or "7d"
    if chosen not in ("7d", "30d", "90d"):
        chosen = "7d"
    until = state.clock()
    since = until - RANGES[chosen]
    drift_window = min(state.settings.drift_windows, key=parse_window) if state.settings.drift_windows else None
    with state.engine.connect() as conn:
        visible = [m for m in all_models(conn) if viewer.sees(m)]
        events = timeline(conn, visible, since=since, until=until, drift_window=drift_window)
    context = {"viewer": viewer, "range": chosen, "title": "Incidents · cvmon", **timeline_context(events, since, until, fleet=True)}
    return render(request, "fleet_incidents.html.j2", context)


@router.get("/static/{name}")
def static(name: str) -> Response:
    kind = STATIC.get(name)
    if kind is None:
        raise ConsoleError(404, "no such file")
    body = (HERE / "static" / name).read_bytes()
    return Response(body, media_type=kind, headers={**SECURITY_HEADERS, "Cache-Control": "public, max-age=3600"})

