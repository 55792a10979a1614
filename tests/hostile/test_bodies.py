"""Request bodies are read whole or refused; JSON endpoints say exactly what to send; no redirect
is built from the Host header; /docs works without the internet. Real HTTP on both databases."""

from __future__ import annotations

import gzip
import json
import re
import shlex
import socket
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.server.records import cls_record, register

pytestmark = pytest.mark.slow  # the hostile suite: every endpoint driven with hostile input, servers per test

ROOT = Path(__file__).resolve().parents[2]
JSON = {"Content-Type": "application/json"}


def _records(model: str, n: int, prefix: str = "p") -> list[dict]:
    return [cls_record(model, f"{prefix}{i}") for i in range(n)]


def _count(c, model: str) -> int:
    return c.get(f"/v1/models/{model}").json()["counts"]["predictions"]


def _post_gzip(c, body: bytes):
    return c.post("/v1/predictions", content=body, headers={**JSON, "Content-Encoding": "gzip"})


# --------------------------------------------------------------------------------------------
# gzip: every member, or 400


def test_a_body_split_over_two_gzip_members_is_decoded_whole(api, model_name):
    text = json.dumps({"records": _records(model_name, 20)}).encode()
    body = gzip.compress(text[: len(text) // 2]) + gzip.compress(text[len(text) // 2 :])
    with api.admin() as c:
        register(c, model_name)
        r = _post_gzip(c, body)
        assert r.status_code == 200, r.text
        assert r.json()["accepted"] == 20 and _count(c, model_name) == 20


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param("second-document", id="a-second-json-document-in-a-second-member"),
        pytest.param(b"garbage!", id="trailing-garbage"),
        pytest.param(b"\x00" * 16, id="trailing-zeros"),
        pytest.param("cut-trailer", id="truncated-before-its-crc"),
        pytest.param("cut-middle", id="truncated-mid-stream"),
    ],
)
def test_a_gzip_body_that_is_not_whole_is_a_400_and_stores_nothing(api, model_name, tail):
    first = gzip.compress(json.dumps({"records": _records(model_name, 5)}).encode())
    if tail == "second-document":
        body = first + gzip.compress(json.dumps({"records": _records(model_name, 5, "q")}).encode())
    elif tail == "cut-trailer":
        body = first[:-8]  # the deflate stream is complete; its CRC and length are not there
    elif tail == "cut-middle":
        body = first[: len(first) // 2]
    else:
        body = first + tail
    with api.admin() as c:
        register(c, model_name)
        r = _post_gzip(c, body)
        assert r.status_code == 400, r.text
        assert "gzip" in r.json()["detail"] or "JSON" in r.json()["detail"]
        assert _count(c, model_name) == 0


def test_gzip_members_count_against_the_body_limit_together(make_api, model_name):
    api = make_api(max_body_bytes=64 * 1024)
    member = gzip.compress(b" " * 40 * 1024)
    body = member + gzip.compress(json.dumps({"records": _records(model_name, 1)}).encode() + b" " * 40 * 1024)
    with api.admin() as c:
        register(c, model_name)
        assert _post_gzip(c, body).status_code == 413


# --------------------------------------------------------------------------------------------
# content types


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/x-www-form-urlencoded", id="curl-d-default"),
        pytest.param("text/plain", id="text"),
        pytest.param("multipart/form-data; boundary=x", id="multipart"),
        pytest.param(None, id="none"),
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/v1/predictions", "records", id="predictions"),
        pytest.param("POST", "/v1/ground-truth", "labels", id="ground-truth"),
        pytest.param("PUT", "/v1/models/{model}", "model", id="register"),
        pytest.param("PUT", "/v1/models/{model}/reference", "reference", id="reference"),
    ],
)
def test_json_endpoints_refuse_other_content_types_with_415_saying_what_to_send(
    api, model_name, content_type, method, path, body
):
    payload = {
        "records": {"records": _records(model_name, 1)},
        "labels": {"records": [{"prediction_id": "p0", "model": model_name, "label": "dent"}]},
        "model": {"task": "classification", "classes": ["a", "b"]},
        "reference": {"version": "v1", "first": 500},
    }[body]
    headers = {} if content_type is None else {"Content-Type": content_type}
    with api.admin() as c:
        register(c, model_name)
        r = c.request(method, path.format(model=model_name), content=json.dumps(payload).encode(), headers=headers)
        assert r.status_code == 415, r.text
        assert "Content-Type: application/json" in r.json()["detail"]
        assert _count(c, model_name) == 0


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/vnd.cvmon+json", "Application/JSON"])
def test_json_media_types_with_parameters_or_suffixes_are_accepted(api, model_name, content_type):
    with api.admin() as c:
        register(c, model_name)
        r = c.post("/v1/predictions", content=json.dumps({"records": _records(model_name, 1)}), headers={"Content-Type": content_type})
        assert r.status_code == 200, r.text


def _readme_curls() -> list[list[str]]:
    """The curl commands of the README's HTTP example, as argument lists."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(curl -X PUT .*?)```", text, re.S)
    assert block, "the README's curl example is gone"
    return [shlex.split(cmd) for cmd in re.split(r"\n(?=curl )", block.group(1).replace("\\\n", " ").strip())]


def test_the_readme_curl_examples_work_as_written(make_api):
    """Each curl line runs as an HTTP request (method, headers, -d body) against a real server
    whose clock is the example's day; each answers what the README says it answers."""
    api = make_api(clock=lambda: datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    curls = _readme_curls()
    assert len(curls) == 3
    answers = []
    with api.client() as c:
        for args in curls:
            method, url, headers, data = "GET", None, {}, None
            it = iter(args[1:])
            for arg in it:
                if arg == "-X":
                    method = next(it)
                elif arg == "-H":
                    name, _, value = next(it).partition(": ")
                    headers[name] = value.replace("$KEY", api.admin_key)
                elif arg == "-d":
                    data = next(it)
                else:
                    url = arg
            assert url is not None and url.startswith("localhost:8000/")
            r = c.request(method, url.removeprefix("localhost:8000"), content=data, headers=headers)
            answers.append(r)
    register_answer, predictions, labels = answers
    assert register_answer.status_code == 201 and register_answer.json()["classes"] == ["scratch", "dent", "ok"]
    for r in (predictions, labels):
        assert r.status_code == 200, r.text
        assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}


# --------------------------------------------------------------------------------------------
# no absolute redirects from Host; offline /docs


@pytest.mark.parametrize("path", ["/v1/models/b/", "/v1/models/", "/metrics/", "/v1/predictions/"])
def test_a_trailing_slash_never_redirects_to_the_host_a_client_names(api, path):
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {api.admin_key}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert "evil.example" not in answer.decode("latin-1")
    assert "\r\nlocation:" not in head
    assert head.split()[1] == "404", head


def test_docs_serve_swagger_ui_from_this_server(make_api, db):
    if db.is_pg:
        pytest.skip("one database is enough: the page does not read it")
    api = make_api()
    with api.client() as c:
        page = c.get("/docs")
        assert page.status_code == 200
        urls = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text) + re.findall(r"""url: ?["']([^"']+)""", page.text)
        assert urls and not [u for u in urls if "://" in u or u.startswith("//")], urls
        for url in urls:
            assert c.get(url).status_code == 200, url
        assert "SwaggerUIBundle" in c.get("/docs/assets/swagger-ui-bundle.js").text
        assert c.get("/redoc").status_code == 404  # not served rather than served from a CDN


@pytest.mark.slow
def test_docs_render_in_chromium_without_the_internet(make_api, db):
    """Chromium resolves no host name here: the page renders from this server alone."""
    from tests.reports.chromium import Chromium, find_chromium

    if db.is_pg:
        pytest.skip("one database is enough: the page does not read it")
    if find_chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    api = make_api()
    browser = Chromium(width=1280, height=1000, reachable="127.0.0.1")
    try:
        load = browser.load(
            f"{api.url}/docs", settle=2.0,
            expression="[document.querySelector('.swagger-ui .info .title')?.textContent,"
                       " document.querySelectorAll('.opblock').length]",
        )  # fmt: skip
    finally:
        browser.close()
    title, operations = load.value
    assert title and title.startswith("cvmon"), load.value
    assert operations >= 10
    assert all(u.startswith(api.url) for u in load.requests), load.requests
