"""Signing in to the console with an API key, the session cookie, and who is looking.

A key with the ``read`` scope opens a session (:mod:`monitor.server.services.console_sessions`):
the cookie is HttpOnly, SameSite=Strict, Secure when the request came over TLS, and ends with
the session (``console_session_hours``). The key's model binding applies to every page and every
JSON a page fetches, exactly as on the API (:class:`monitor.server.api.deps.Principal`). Changing
something (silences) needs the ``admin`` scope, like the other writes of the API. With
authentication disabled the console is open and says so on every page.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from monitor.server.api.deps import AppState, Principal, StateDep
from monitor.server.console.web import (
    ANON_CSRF_COOKIE,
    SESSION_COOKIE,
    ConsoleError,
    SignInRequired,
    anon_csrf,
    check_csrf,
    check_origin,
    read_form,
    render,
    set_cookie,
)
from monitor.server.services.console_sessions import ConsoleSession, end_session, find_session, start_session
from monitor.server.store.engine import write_transaction

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Viewer:
    """Who is looking at a page: the key (None with authentication disabled) and the CSRF token
    its forms carry."""

    principal: Principal
    session: ConsoleSession | None
    csrf: str
    auth_disabled: bool
    #: the CSRF token is a new double-submit cookie, set on the response
    new_anon_csrf: bool = False

    @property
    def can_change(self) -> bool:
        """Whether this viewer may add and expire silences (the ``admin`` scope)."""
        key = self.principal.key
        return key is None or "admin" in key.scopes

    def sees(self, model: str) -> bool:
        return self.principal.allows_model(model)


def viewer(request: Request, state: StateDep) -> Viewer:
    """The dependency of every page: the signed-in key, or everyone when auth is disabled."""
    if state.settings.auth_disabled:
        token, new = anon_csrf(request)
        return Viewer(Principal(None), None, token, True, new)
    cookie = request.cookies.get(SESSION_COOKIE, "")
    session = None
    if cookie:
        with state.engine.connect() as conn:
            session = find_session(conn, cookie, now=state.clock())
    if session is None or "read" not in session.key.scopes:
        raise SignInRequired()
    return Viewer(Principal(session.key), session, session.csrf_token, False)


ViewerDep = Annotated[Viewer, Depends(viewer)]


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this console only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target or "\n" in target:
        return "/"
    return target


def sign_in_redirect(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def _login_page(request: Request, state: AppState, *, error: str = "", status: int = 200, notice: str = "") -> Response:
    token, new = anon_csrf(request)
    guest = Viewer(Principal(None), None, token, state.settings.auth_disabled, new)
    context = {"viewer": guest, "error": error, "notice": notice, "next": safe_next(request.query_params.get("next")),
               "signed_in": False, "title": "Sign in"}  # fmt: skip
    return render(request, "login.html.j2", context, status=status)


@router.get("/login")
def login_form(request: Request, state: StateDep) -> Response:
    if state.settings.auth_disabled:
        return RedirectResponse("/", status_code=303)
    notice = "You are signed out." if request.query_params.get("signed_out") else ""
    return _login_page(request, state, notice=notice)


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    from fastapi.concurrency import run_in_threadpool

    if state.settings.auth_disabled:
        return RedirectResponse("/", status_code=303)
    check_origin(request)
    form = await read_form(request)
    check_csrf(request.cookies.get(ANON_CSRF_COOKIE, ""), form)
    text = form.get("key", "").strip()
    target = safe_next(form.get("next"))

    def open_session() -> tuple[str, ConsoleSession] | str:
        key = state.keys.get(text) if text else None
        if key is None:
            return "That is not a valid API key (or it was revoked). Create one with `cvmon keys create --scopes read`."
        if "read" not in key.scopes:
            return "This key lacks the read scope the console needs; create one with `cvmon keys create --scopes read`."
        lifetime = timedelta(hours=state.settings.console_session_hours)
        with write_transaction(state.engine) as conn:
            return start_session(conn, key, now=state.clock(), lifetime=lifetime)

    opened = await run_in_threadpool(open_session)
    if isinstance(opened, str):
        return _login_page(request, state, error=opened, status=401)
    token, _session = opened
    response = RedirectResponse(target, status_code=303)
    set_cookie(response, request, SESSION_COOKIE, token, max_age=int(state.settings.console_session_hours * 3600))
    return response


@router.post("/logout")
async def logout(request: Request, state: StateDep) -> Response:
    from fastapi.concurrency import run_in_threadpool

    check_origin(request)
    form = await read_form(request)
    cookie = request.cookies.get(SESSION_COOKIE, "")

    def close() -> None:
        with write_transaction(state.engine) as conn:
            session = find_session(conn, cookie, now=state.clock()) if cookie else None
            if session is None:
                return  # nothing to end: signing out of an ended session just shows the form
            check_csrf(session.csrf_token, form)
            end_session(conn, cookie)

    await run_in_threadpool(close)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=request.url.scheme == "https")
    return response


def require_change(viewer: Viewer) -> None:
    if not viewer.can_change:
        raise ConsoleError(403, "adding or expiring a silence needs a key with the admin scope; this key has "
                                f"{', '.join(sorted(viewer.principal.key.scopes)) if viewer.principal.key else 'none'}")  # fmt: skip
