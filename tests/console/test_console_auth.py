"""Signing in and out of the console, the session cookie, CSRF, scopes and keys bound to models,
over real HTTP on PostgreSQL and SQLite (a light fleet: registered models, no evaluation)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.console.seed import CLASSES

pytestmark = pytest.mark.slow  # the console served and driven over HTTP or in Chromium

SET_COOKIE = "set-cookie"


def register(api: Any, *names: str) -> None:
    with api.admin() as client:
        for name in names:
            answer = client.put(f"/v1/models/{name}", json={"task": "classification", "classes": CLASSES})
            assert answer.status_code == 201, answer.text


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


OPEN: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_clients():
    yield
    while OPEN:
        OPEN.pop().close()


def sign_in(url: str, key: str, **kwargs: Any) -> tuple[httpx.Client, httpx.Response]:
    client = httpx.Client(base_url=url, timeout=30, **kwargs)
    OPEN.append(client)
    form = client.get("/login")
    assert form.status_code == 200
    answer = client.post("/login", data={"key": key, "csrf": csrf_of(form.text), "next": "/"})
    return client, answer


@pytest.fixture
def fleet(make_api: Any, model_name: str) -> tuple[Any, str, str]:
    api = make_api()
    mine, theirs = f"{model_name}-a", f"{model_name}-b"
    register(api, mine, theirs)
    return api, mine, theirs


def test_a_page_without_a_session_redirects_to_the_sign_in_form_and_json_answers_401(fleet):
    api, mine, _ = fleet
    with httpx.Client(base_url=api.url, timeout=30) as client:
        page = client.get(f"/models/{mine}/classes?window=1h")
        assert page.status_code == 303
        assert page.headers["location"] == f"/login?next=%2Fmodels%2F{mine}%2Fclasses%3Fwindow%3D1h"
        assert client.get("/fleet.json").status_code == 401
        assert client.get(f"/models/{mine}/chart.json?id=quality").status_code == 401
        form = client.get("/login")
        assert form.status_code == 200 and 'type="password"' in form.text
        assert "default-src 'none'" in form.headers["content-security-policy"]


def test_signing_in_sets_a_strict_http_only_session_cookie_that_signing_out_ends_on_the_server(fleet):
    api, mine, theirs = fleet
    key = api.create_key(["read"])
    client, answer = sign_in(api.url, key)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = answer.headers[SET_COOKIE]
    assert cookie.startswith("cvmon_session=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=43200" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain HTTP: a Secure cookie would never come back
    token = client.cookies["cvmon_session"]
    assert len(token) >= 43 and token not in key
    page = client.get("/")
    assert page.status_code == 200 and mine in page.text and theirs in page.text
    out = client.post("/logout", data={"csrf": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
    assert 'cvmon_session=""' in out.headers[SET_COOKIE]
    # the old cookie, replayed, opens nothing: the session is gone from the database
    with httpx.Client(base_url=api.url, timeout=30, cookies={"cvmon_session": token}) as replay:
        assert replay.get("/").status_code == 303


def test_the_cookie_is_secure_when_the_request_came_over_tls(fleet):
    api, _, _ = fleet
    key = api.create_key(["read"])
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as from a TLS-terminating proxy
    with httpx.Client(base_url=api.url, timeout=30, headers={"X-Forwarded-Proto": "https"}) as client:
        form = client.get("/login")
        assert "Secure" in form.headers[SET_COOKIE]  # the sign-in form's CSRF cookie too
        token = csrf_of(form.text)
        client.cookies.set("cvmon_csrf", token)  # httpx keeps Secure cookies for https URLs only
        answer = client.post("/login", data={"key": key, "csrf": token})
    assert answer.status_code == 303
    assert "Secure" in answer.headers[SET_COOKIE] and "HttpOnly" in answer.headers[SET_COOKIE]


def test_a_bad_key_a_key_without_read_scope_and_a_revoked_key_do_not_sign_in(fleet):
    from monitor.server.services.keys import revoke_key
    from monitor.server.store.engine import write_transaction

    api, _, _ = fleet
    for key, message in (("cvm_000000000000_" + "x" * 43, "not a valid API key"), ("nonsense", "not a valid API key"),
                         (api.create_key(["ingest"]), "lacks the read scope")):  # fmt: skip
        _, answer = sign_in(api.url, key)
        assert answer.status_code == 401 and message in answer.text, answer.text
        assert "cvmon_session" not in answer.headers.get(SET_COOKIE, "")
    key = api.create_key(["read"])
    client, answer = sign_in(api.url, key)
    assert client.get("/").status_code == 200
    with write_transaction(api.db.engine) as conn:
        assert revoke_key(conn, key.split("_")[1], now=datetime.now(UTC))
    assert client.get("/").status_code == 303  # the session dies with its key, at once


def test_sessions_end_when_they_expire(make_api, model_name):
    now = [datetime.now(UTC)]
    api = make_api(clock=lambda: now[0], console_session_hours=1.0)
    register(api, model_name)
    client, answer = sign_in(api.url, api.create_key(["read"]))
    assert "Max-Age=3600" in answer.headers[SET_COOKIE]
    assert client.get("/").status_code == 200
    now[0] += timedelta(minutes=61)
    assert client.get("/").status_code == 303


def test_the_sign_in_form_refuses_a_post_without_its_csrf_token_or_from_another_site(fleet):
    api, _, _ = fleet
    key = api.create_key(["read"])
    with httpx.Client(base_url=api.url, timeout=30) as client:
        client.get("/login")
        answer = client.post("/login", data={"key": key, "csrf": "forged-token-forged-token"})
        assert answer.status_code == 403 and "CSRF" in answer.text
        answer = client.post("/login", data={"key": key, "csrf": client.cookies["cvmon_csrf"]},
                             headers={"Origin": "https://evil.example"})  # fmt: skip
        assert answer.status_code == 403 and "another site" in answer.text
        answer = client.post("/login", content=b'{"key": "x"}', headers={"Content-Type": "application/json"})
        assert answer.status_code == 415


def test_adding_a_silence_needs_the_session_csrf_token_and_the_admin_scope(fleet):
    api, mine, _ = fleet
    reader, _ = sign_in(api.url, api.create_key(["read"]))
    page = reader.get(f"/models/{mine}/slos")
    assert page.status_code == 200 and "needs a key with the admin scope" in page.text
    assert reader.post(f"/models/{mine}/silences", data={"csrf": csrf_of(page.text), "duration": "2h"}).status_code == 403
    admin, _ = sign_in(api.url, api.create_key(["read", "admin"]))
    page = admin.get(f"/models/{mine}/slos")
    token = csrf_of(page.text)
    for form in ({"duration": "2h"}, {"duration": "2h", "csrf": "x" * 43}, {"duration": "2h", "csrf": csrf_of(reader.get("/").text)}):
        answer = admin.post(f"/models/{mine}/silences", data=form)
        assert answer.status_code == 403 and "CSRF check failed" in answer.text
    answer = admin.post(f"/models/{mine}/silences", data={"csrf": token, "duration": "90m", "comment": "lens swap"})
    assert answer.status_code == 303
    listed = admin.get(answer.headers["location"])
    assert "lens swap" in listed.text and "Expire now" in listed.text
    for bad, message in (({"duration": "soon"}, "duration"), ({"duration": "2h", "slo": "nope"}, "has no SLO")):
        answer = admin.post(f"/models/{mine}/silences", data={"csrf": token, **bad})
        assert answer.status_code == 400 and message in answer.text


def test_a_key_bound_to_one_model_sees_only_it_in_pages_and_in_json(fleet):
    api, mine, theirs = fleet
    client, _ = sign_in(api.url, api.create_key(["read", "admin"], models=[mine]))
    fleet_page = client.get("/")
    assert mine in fleet_page.text and theirs not in fleet_page.text
    assert [m["model"] for m in client.get("/fleet.json").json()["models"]] == [mine]
    for path in ("", "/classes", "/calibration", "/drift", "/service", "/slos", "/incidents", "/reports"):
        assert client.get(f"/models/{mine}{path}").status_code == 200, path
        answer = client.get(f"/models/{theirs}{path}")
        assert answer.status_code == 404 and theirs in answer.text, path
    for path in ("/chart.json?id=quality", "/predictions.json?at=2026-11-25T10:00Z&true=0&pred=1"):
        answer = client.get(f"/models/{theirs}{path}")
        assert answer.status_code == 404 and answer.headers["content-type"] == "application/json"
    assert client.get(f"/models/{mine}/chart.json?id=quality").status_code == 200
    page = client.get(f"/models/{mine}/slos")
    answer = client.post(f"/models/{theirs}/silences", data={"csrf": csrf_of(page.text), "duration": "1h"})
    assert answer.status_code == 404
    # nor can it end another model's silence by naming it under its own model
    from monitor.server.slo.silences import add_silence
    from monitor.server.store.engine import write_transaction

    with write_transaction(api.db.engine) as conn:
        other = add_silence(conn, model=theirs, duration=timedelta(hours=1), now=datetime.now(UTC))
    answer = client.post(f"/models/{mine}/silences/{other.silence_id}/expire", data={"csrf": csrf_of(page.text)})
    assert answer.status_code == 404


def test_with_auth_disabled_the_console_is_open_and_says_so(make_api, model_name):
    api = make_api(auth_disabled=True)
    register(api, model_name)
    with httpx.Client(base_url=api.url, timeout=30) as client:
        page = client.get("/")
        assert page.status_code == 200 and model_name in page.text
        assert "Authentication is disabled" in page.text
        assert client.get("/login").status_code == 303
        slos = client.get(f"/models/{model_name}/slos")
        token = csrf_of(slos.text)
        assert token == client.cookies["cvmon_csrf"]
        assert client.post(f"/models/{model_name}/silences", data={"duration": "1h", "csrf": "y" * 43}).status_code == 403
        answer = client.post(f"/models/{model_name}/silences", data={"duration": "1h", "csrf": token})
        assert answer.status_code == 303


def test_bad_controls_get_a_page_that_says_what_is_accepted_never_a_server_error(fleet):
    api, mine, _ = fleet
    client, _ = sign_in(api.url, api.create_key(["read"]))
    cases = {
        "window=3h": (400, "window must be one of 1h, 1d, 7d"),
        "version=v9": (400, "no version"),
        "cohort=camera:nowhere": (400, "no evaluated cohort slice"),
        "end=yesterday": (400, "end must be a time"),
        "at=2026-11-25T10:00Z": (400, "no evaluated 1h window"),
        "range=3w": (200, ""),  # an unknown range falls back to the window's default
    }
    for query, (status, message) in cases.items():
        answer = client.get(f"/models/{mine}/classes?{query}")
        assert answer.status_code == status and message in answer.text, (query, answer.text[-500:])
    for path in ("/models/%00", "/models/" + "x" * 300, "/models/a%2Fb/classes", "/static/../app.py", "/static/nope.js"):
        assert client.get(path).status_code == 404, path
    assert client.get(f"/models/{mine}/chart.json?id=nope").status_code == 404
    assert client.get(f"/models/{mine}/predictions?at=2026-11-25T10:00Z&true=x&pred=1").status_code == 400


def test_a_form_sent_after_signing_out_changes_nothing_and_says_why(fleet):
    api, mine, _ = fleet
    client, _ = sign_in(api.url, api.create_key(["read", "admin"]))
    page = client.get(f"/models/{mine}/slos")
    token = csrf_of(page.text)
    assert client.post("/logout", data={"csrf": token}).status_code == 303
    answer = client.post(f"/models/{mine}/silences", data={"csrf": token, "duration": "1h"})
    assert answer.status_code == 401 and "nothing was changed" in answer.text
    from monitor.server.slo.silences import list_silences

    with api.db.engine.connect() as conn:
        assert list_silences(conn, now=datetime.now(UTC), model=mine) == []


def test_signing_in_goes_back_to_the_page_asked_for_and_never_to_another_site(fleet):
    api, mine, _ = fleet
    key = api.create_key(["read"])
    for target, expected in ((f"/models/{mine}/drift?window=1d", f"/models/{mine}/drift?window=1d"), ("//evil.example/x", "/"),
                             ("https://evil.example/", "/"), ("/\\evil.example", "/")):  # fmt: skip
        with httpx.Client(base_url=api.url, timeout=30) as client:
            form = client.get("/login")
            answer = client.post("/login", data={"key": key, "csrf": csrf_of(form.text), "next": target})
            assert answer.status_code == 303 and answer.headers["location"] == expected, target
