"""The built-in console: server-rendered pages over the services, mounted at ``/`` next to the API.

=============================  ==================================================================
``/``                          the fleet: every model this key may see, what needs attention first
``/incidents``                 the fleet's incident timeline (alerts, drift flags, versions, silences)
``/models/M``                  quality over time per window / version / cohort, the label-free
                               estimate beside realised accuracy, the cohorts
``/models/M/classes``          per-class table (sortable, with trends), the confusion matrix of a
                               window; a cell lists its predictions (``/models/M/predictions``)
``/models/M/calibration``      reliability diagram of a window, ECE over time
``/models/M/drift``            drift score per detector x cohort over time; the references
``/models/M/service``          latency and errors by version
``/models/M/slos``             budgets, burn-down, burn rate per alert window, incidents, silences
``/models/M/incidents``        the model's incident timeline
``/models/M/reports``          the stored weekly reports
``/login``, ``/logout``        sign in with an API key (read scope), sign out
=============================  ==================================================================

Pages are Jinja2 templates (``templates/``) with the package's own stylesheet and script
(``static/``); nothing is fetched from elsewhere. JSON the pages fetch (``chart.json``,
``predictions.json``, ``/fleet.json``) is served under the same session and model binding.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response

from monitor.server.console.web import ConsoleError, SignInRequired, json_response, render, wants_json


def install(app: FastAPI) -> None:
    """Add the console's routes and error pages to ``app``."""
    from monitor.server.console import auth, fleet_pages, model_pages, slo_pages

    for module in (auth, fleet_pages, model_pages, slo_pages):
        app.include_router(module.router)
    app.add_exception_handler(ConsoleError, _error)  # type: ignore[arg-type]
    app.add_exception_handler(SignInRequired, _sign_in)  # type: ignore[arg-type]


async def _error(request: Request, exc: ConsoleError) -> Response:
    if wants_json(request):
        return json_response({"detail": exc.message}, status=exc.status)
    context = {"viewer": None, "status": exc.status, "message": exc.message, "title": f"{exc.status} · cvmon"}
    return render(request, "error.html.j2", context, status=exc.status)


async def _sign_in(request: Request, exc: SignInRequired) -> Response:
    from monitor.server.console.auth import sign_in_redirect

    if wants_json(request):
        return json_response({"detail": "sign in to the console first (POST /login with an API key)"}, status=401)
    if request.method != "GET":  # a form sent after the session ended: say so, change nothing
        context = {"viewer": None, "status": 401, "title": "401 · cvmon",
                   "message": "Your session has ended (or you signed out), so nothing was changed. Sign in and send the form again."}  # fmt: skip
        return render(request, "error.html.j2", context, status=401)
    return sign_in_redirect(request)


__all__ = ["install"]
