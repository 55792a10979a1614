"""Query and path parameters parse into bounded types: past a bound the answer is a 422 that says
what is allowed, never a 500 from an overflow in datetime arithmetic or in the database."""

from __future__ import annotations

import base64

import pytest

from tests.server.records import register

pytestmark = pytest.mark.slow  # the hostile suite: every endpoint driven with hostile input, servers per test


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


def _detail(r) -> str:
    detail = r.json()["detail"]
    return detail if isinstance(detail, str) else " ".join(str(d.get("msg", "")) + str(d.get("ctx", "")) for d in detail)


@pytest.mark.parametrize(
    ("path", "params", "says"),
    [
        pytest.param("metrics", {"cursor": _cursor("-5")}, "next_cursor", id="cursor-negative"),
        pytest.param("metrics", {"cursor": _cursor("9" * 12)}, "next_cursor", id="cursor-past-the-bound"),
        pytest.param("metrics", {"cursor": _cursor("99999999999")}, "next_cursor", id="cursor-int64-overflow"),
        pytest.param("metrics", {"cursor": _cursor("١٢")}, "next_cursor", id="cursor-non-ascii-digits"),
        pytest.param("metrics", {"cursor": "%%%%"}, "", id="cursor-not-base64"),
        pytest.param("metrics", {"cursor": "A" * 400}, "16", id="cursor-too-long"),
        pytest.param("metrics", {"window": "1000000000d"}, "1h, 1d, 7d", id="metrics-window-huge"),
        pytest.param("metrics", {"window": "2h"}, "1h, 1d, 7d", id="metrics-window-not-evaluated"),
        pytest.param("confusion-matrix", {"window": "1000000000d"}, "1h, 6h, 1d", id="confusion-window-huge"),
        pytest.param("confusion-matrix", {"window": "99999999999999999999h"}, "12", id="confusion-window-digits"),
        pytest.param("confusion-matrix", {"window": "400d"}, "366d", id="confusion-window-over-a-year"),
        pytest.param("confusion-matrix", {"window": "١h"}, "1h, 6h", id="confusion-window-arabic-digit"),
        pytest.param("metrics", {"limit": "0"}, "1", id="limit-zero"),
        pytest.param("metrics", {"limit": "10001"}, "10000", id="limit-over"),
        pytest.param("metrics", {"limit": "1" + "0" * 30}, "10000", id="limit-huge"),
        pytest.param("metrics", {"limit": "-1"}, "1", id="limit-negative"),
        pytest.param("metrics", {"since": "10000-01-01T00:00:00Z"}, "", id="since-year-10000"),
        pytest.param("metrics", {"since": "1e30"}, "", id="since-unix-huge"),
        pytest.param("metrics", {"until": "0001-01-01T00:00:00+01:00"}, "1-9999", id="until-before-year-1-in-utc"),
        pytest.param("confusion-matrix", {"end": "0001-01-01T00:00:00Z"}, "out of range", id="end-year-1"),
        pytest.param("metrics", {"version": "v" * 65}, "64", id="version-too-long"),
        pytest.param("metrics", {"class": "c\x00"}, "NUL", id="class-nul"),
        pytest.param("metrics", {"cohort": ("k" * 65) + ":v"}, "64", id="cohort-key-too-long"),
    ],
)
def test_out_of_bounds_parameters_are_422_with_what_is_allowed(api, model_name, path, params, says):
    with api.admin() as c:
        register(c, model_name)
        r = c.get(f"/v1/models/{model_name}/{path}", params=params)
    assert r.status_code == 422, r.text
    assert says in _detail(r), r.text


def test_a_cursor_the_api_gave_out_pages_on(api, model_name):
    """The bound does not get in the way of real paging: next_cursor still works."""
    from tests.server.records import cls_record

    with api.admin() as c:
        register(c, model_name)
        assert c.post("/v1/predictions", json={"records": [cls_record(model_name, "p")]}).status_code == 200
        r = c.get(f"/v1/models/{model_name}/metrics", params={"cursor": _cursor("0"), "limit": 1})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("report_id", ["٢٠٢٦-W47", "2026-W4７", "latest%00"])
def test_report_ids_are_ascii(api, model_name, report_id):
    with api.admin() as c:
        register(c, model_name)
        r = c.get(f"/v1/models/{model_name}/reports/{report_id}")
    assert r.status_code == 422, r.text
