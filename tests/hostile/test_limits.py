"""Body and array limits over real HTTP: a 10^8-element embedding never gets materialised.

The record-level refusal by length (before decoding) is proven in test_wire_fuzz.py; here the
same array arrives as a JSON list, whose body alone is far over the body limit, in the three ways
a body arrives: declared by Content-Length, gzip-compressed to a few hundred kilobytes (a bomb),
and as hostile nesting that no JSON parser should recurse through.
"""

from __future__ import annotations

import json
import socket
import tracemalloc
import zlib

import pytest

from tests.faults.servers import wait_for
from tests.server.records import cls_record, register

pytestmark = pytest.mark.slow  # the hostile suite: every endpoint driven with hostile input, servers per test

LIMIT = 1 << 20  # 1 MiB keeps the test fast; the default (32 MiB) works the same way
N = 10**8


def _gzip_list_body(model: str, n: int) -> bytes:
    """gzip of {"records": [{... "embedding": [0,0,...(n)]}]} without building the text."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    head = json.dumps({"records": [cls_record(model, "huge")]})[:-3] + ', "embedding": ['
    parts = [z.compress(head.encode())]
    block = b"0," * (1 << 20)
    for _ in range(n // (1 << 20)):
        parts.append(z.compress(block))
    parts.append(z.compress(b"0]}]}"))
    parts.append(z.flush())
    return b"".join(parts)


def test_a_gzip_bomb_of_a_hundred_million_values_is_refused_within_the_limit(make_api, model_name):
    api = make_api(max_body_bytes=LIMIT)
    body = _gzip_list_body(model_name, N)
    assert len(body) < LIMIT  # small on the wire: only the inflated size is over the limit
    with api.admin() as c:
        register(c, model_name)
        tracemalloc.start()
        try:
            r = c.post(
                "/v1/predictions",
                content=body,
                headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
            )
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert r.status_code == 413, r.text
        assert c.get(f"/v1/models/{model_name}").json()["counts"]["predictions"] == 0
    # the server inflated at most limit + 1 bytes; the list would be 200 MB of text, 800 MB as float64
    assert peak < 8 * LIMIT + len(body), f"peak {peak / 1e6:.1f} MB"


def test_a_declared_200_mb_body_is_refused_before_it_is_read(make_api, model_name):
    api = make_api(max_body_bytes=LIMIT)
    host, port = api.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(
            f"POST /v1/predictions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api.admin_key}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {2 * N + 100}\r\n\r\n".encode()
            + b'{"records": [{"embedding": [0,0,0'
        )
        status_line = s.recv(4096).split(b"\r\n", 1)[0]
    assert status_line.split()[1] == b"413"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(b"[" * 100_000 + b"]" * 100_000, 400, id="100k-nested-arrays"),
        pytest.param(
            b'{"records": [{"cohort": ' + b'{"a": ' * 5_000 + b"1" + b"}" * 5_000 + b"}]}", 400, id="5k-nested-objects"
        ),
    ],
)
def test_deeply_nested_json_is_a_400_not_a_crash(api, body, status):
    with api.admin() as c:
        r = c.post("/v1/predictions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text[:300]


def test_nesting_a_parser_accepts_is_a_rejected_record(api, model_name):
    deep = '{"a": ' * 500 + "1" + "}" * 500
    records = (
        json.dumps({"records": [cls_record(model_name, "ok")]})[:-2]
        + f', {{"prediction_id": "deep", "model": "{model_name}", "model_version": "v", "predicted_class": 0, "cohort": {deep}}}]}}'
    )
    with api.admin() as c:
        register(c, model_name)
        body = c.post("/v1/predictions", content=records.encode(), headers={"Content-Type": "application/json"}).json()
    assert body["accepted"] == 1 and body["rejected"][0]["index"] == 1


def test_nan_and_infinity_literals_reject_only_their_record(api, model_name):
    raw = json.dumps({"records": [cls_record(model_name, "ok"), cls_record(model_name, "nan", probs=[float("nan"), 0.5, 0.5]),
                                  cls_record(model_name, "inf", latency_ms=float("inf"))]})  # fmt: skip
    assert "NaN" in raw and "Infinity" in raw
    with api.admin() as c:
        register(c, model_name)
        body = c.post("/v1/predictions", content=raw.encode(), headers={"Content-Type": "application/json"}).json()
    assert body["accepted"] == 1
    assert [r["index"] for r in body["rejected"]] == [1, 2]


def test_a_client_hanging_up_mid_body_is_not_a_server_error(api, model_name, caplog):
    """A client that dies while sending (a killed inference pod) leaves the server unbothered:
    no traceback, no 5xx in the server's own metrics."""
    host, port = api.url.removeprefix("http://").split(":")
    with api.admin() as c:
        register(c, model_name)
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=10) as s:
            s.sendall(
                f"POST /v1/predictions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {api.admin_key}\r\n"
                f"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
                + b'{"records": [{"pred'
            )

    def answered() -> list[str]:
        with api.admin() as c:
            text = c.get("/metrics").text
        return [line for line in text.splitlines()
                if line.startswith("cvmon_http_request_duration_seconds_count") and 'route="/v1/predictions"' in line]  # fmt: skip

    lines = wait_for(
        lambda: sum(float(line.rsplit(" ", 1)[1]) for line in answered()) >= 3 and answered(), "the hang-ups to be seen"
    )
    assert all('status="499"' in line for line in lines), lines
    assert "Exception in ASGI application" not in caplog.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        pytest.param("confusion-matrix", {"end": "0001-01-01T00:00:00Z"}, id="confusion-end-year-1"),
        pytest.param("confusion-matrix", {"end": "0001-01-01T00:00:00+01:00"}, id="confusion-end-before-year-1-in-utc"),
        pytest.param("confusion-matrix", {"end": "9999-12-31T23:30:00Z", "window": "1d"}, id="confusion-end-year-9999"),
        pytest.param("metrics", {"until": "0001-01-01T00:00:00Z"}, id="metrics-until-year-1"),
        pytest.param("metrics", {"until": "0001-01-01T00:00:00+01:00"}, id="metrics-until-before-year-1-in-utc"),
        pytest.param("metrics", {"since": "9999-12-31T23:59:59-01:00"}, id="metrics-since-after-year-9999-in-utc"),
    ],
)
def test_times_at_the_edge_of_the_calendar_are_422_not_500(api, model_name, path, params):
    with api.admin() as c:
        register(c, model_name)
        r = c.get(f"/v1/models/{model_name}/{path}", params=params)
    assert r.status_code in (200, 422), r.text
    assert r.json()


@pytest.mark.parametrize("param", ["class", "version", "cohort", "metric"])
def test_a_nul_character_in_a_query_filter_is_422_not_500(api, model_name, param):
    """PostgreSQL refuses NUL in text: the filter must be refused before it reaches the database."""
    with api.admin() as c:
        register(c, model_name)
        r = c.get(
            f"/v1/models/{model_name}/metrics", params={param: "a\x00b" if param != "cohort" else "camera:a\x00b"}
        )
    assert r.status_code == 422, r.text
