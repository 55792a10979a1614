"""The console's plumbing: templates, security headers, form bodies, CSRF checks, errors.

Pages are server-rendered Jinja2 with autoescaping; the only script and stylesheet are the
package's own (``static/``), which the Content-Security-Policy below is the only source of: no
inline script, no inline style, nothing from another origin, no framing.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

HERE = Path(__file__).parent
#: Every response of the console carries these.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
#: The CSRF token of forms shown without a session (the sign-in form; every form while
#: authentication is disabled): a double-submit cookie, compared with the form's field.
ANON_CSRF_COOKIE = "cvmon_csrf"
SESSION_COOKIE = "cvmon_session"
#: Form bodies are a few fields; anything larger is refused before it is parsed.
MAX_FORM_BYTES = 16 * 1024


class ConsoleError(Exception):
    """An error page (or JSON error for ``.json`` paths) with a status and a message for people."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class SignInRequired(Exception):
    """The request has no live session: pages redirect to the sign-in form, JSON answers 401."""


@lru_cache(maxsize=1)
def environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    from monitor.server.console import formats, params

    env.filters.update(formats.FILTERS)
    env.globals["ranges_for"] = params.ranges_for
    return env


def secure(request: Request) -> bool:
    """Whether the request came over TLS (``X-Forwarded-Proto`` from a trusted proxy included:
    uvicorn rewrites the scheme for the addresses in ``--forwarded-allow-ips``)."""
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, *, max_age: int, path: str = "/") -> None:
    response.set_cookie(name, value, max_age=max_age, path=path, httponly=True, samesite="strict", secure=secure(request))


def anon_csrf(request: Request) -> tuple[str, bool]:
    """The double-submit token of this browser, and whether it is new (to be set as a cookie)."""
    token = request.cookies.get(ANON_CSRF_COOKIE, "")
    if 20 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum():
        return token, False
    return secrets.token_urlsafe(32), True


def check_csrf(expected: str, form: Mapping[str, str]) -> None:
    """403 unless the form's ``csrf`` field equals ``expected`` (compared in constant time)."""
    sent = form.get("csrf", "")
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise ConsoleError(
            403, "this form has expired or did not come from this console (CSRF check failed): reload the page and try again"
        )


def check_origin(request: Request) -> None:
    """A state change from a page of another site is refused even before the token is checked."""
    origin = request.headers.get("origin")
    if origin and origin != "null" and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
        raise ConsoleError(403, "this request came from another site's page; the console only accepts its own forms")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (last value wins)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise ConsoleError(415, "send the console's forms from the console (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise ConsoleError(413, f"a form body is at most {MAX_FORM_BYTES // 1024} KiB")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise ConsoleError(400, "the form body is not valid UTF-8 form data") from None
    return {k: v for k, v in pairs if "\x00" not in k and "\x00" not in v}


def render(request: Request, template: str, context: Mapping[str, Any], *, status: int = 200) -> HTMLResponse:
    html = environment().get_template(template).render(request=request, **context)
    response = HTMLResponse(html, status_code=status, headers=dict(SECURITY_HEADERS))
    viewer = context.get("viewer")
    if viewer is not None and viewer.new_anon_csrf:
        set_cookie(response, request, ANON_CSRF_COOKIE, viewer.csrf, max_age=12 * 3600)
    return response


def json_response(payload: Any, *, status: int = 200) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers=dict(SECURITY_HEADERS))


def wants_json(request: Request) -> bool:
    return request.url.path.endswith(".json")
