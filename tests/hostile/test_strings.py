"""Every string a client can send, with arbitrary unicode, against a real server on both databases.

NUL characters, lone surrogates (Python's json accepts ``"\\ud800"``), noncharacters, control
characters and overlong text go into every string field of both record kinds, into the names a
model is registered with, into every query and path parameter, as raw percent-encoded bytes
(invalid UTF-8 included). The server must never answer 5xx: a bad record is rejected with its
index and a reason while the good record beside it is stored, a bad parameter is a 4xx.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_from_bytes

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.server.records import CLASSES, cls_record, det_record, register

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:Generating overly large repr")]

EXAMPLES = settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))

#: Every character, lone surrogates included, and the texts that broke servers before.
TEXT = st.one_of(
    st.text(st.characters(codec=None, exclude_categories=()), max_size=24),
    st.sampled_from(["\x00", "a\x00b", "\ud800", "x\udfff", "\udbff\udfff", "\ufffe", "\uffff", "\x1b[31m",
                     "a" * 300, "\u202e", "\r\n", "%00", "cam-1"]),
)  # fmt: skip


def _set(record: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(record))
    target = out
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value
    return out


def _as_key(record: dict[str, Any], path: tuple[str, ...], text: str) -> dict[str, Any]:
    """``text`` as a key: of the record itself (path ``()``) or of a nested object."""
    out = json.loads(json.dumps(record))
    target = out
    for key in path:
        target = target.setdefault(key, {})
    target[text] = "x"
    return out


#: (name, how a hostile text is placed into a valid record of the model kind)
PREDICTION_FIELDS = [
    ("prediction_id", lambda r, s: _set(r, ("prediction_id",), s)),
    ("model", lambda r, s: _set(r, ("model",), s)),
    ("model_version", lambda r, s: _set(r, ("model_version",), s)),
    ("request_id", lambda r, s: _set(r, ("request_id",), s)),
    ("input_hash", lambda r, s: _set(r, ("input_hash",), s)),
    ("trace_id", lambda r, s: _set(r, ("trace_id",), s)),
    ("span_id", lambda r, s: _set(r, ("span_id",), s)),
    ("status", lambda r, s: _set(r, ("status",), s)),
    ("timestamp", lambda r, s: _set(r, ("timestamp",), s)),
    ("cohort-value", lambda r, s: _set(r, ("cohort", "camera"), s)),
    ("cohort-key", lambda r, s: _as_key(r, ("cohort",), s)),
    ("cohort-nested", lambda r, s: _set(r, ("cohort", "site"), {s: s})),
    ("record-key", lambda r, s: _as_key(r, (), s)),
    ("predicted_class", lambda r, s: _set({k: v for k, v in r.items() if k != "probabilities"}, ("predicted_class",), s)),
    ("embedding-dtype", lambda r, s: _set(r, ("embedding",), {"base64": "AAAAAA==", "dtype": s})),
    ("embedding-base64", lambda r, s: _set(r, ("embedding",), {"base64": s, "dtype": "float32"})),
]
DETECTION_FIELDS = [
    ("box_classes", lambda r, s: _set(r, ("box_classes",), [s, "ok"])),
]
GROUND_TRUTH_FIELDS = [
    ("prediction_id", lambda r, s: _set(r, ("prediction_id",), s)),
    ("model", lambda r, s: _set(r, ("model",), s)),
    ("label", lambda r, s: _set(r, ("label",), s)),
    ("timestamp", lambda r, s: _set(r, ("timestamp",), s)),
    ("record-key", lambda r, s: _as_key(r, (), s)),
]
DETECTION_GT_FIELDS = [
    ("box_classes", lambda r, s: {"prediction_id": "g", "model": r["model"], "boxes": [[0, 0, 1, 1]], "box_classes": [s]}),
]


def _post(c: Any, path: str, records: list[dict[str, Any]]) -> Any:
    # ensure_ascii: a lone surrogate travels as the escape "\ud800", which JSON parsers accept
    body = json.dumps({"records": records}, ensure_ascii=True).encode()
    return c.post(path, content=body, headers={"Content-Type": "application/json"})


def _check_batch(r: Any, hostile_index: int) -> None:
    assert r.status_code == 200, (r.status_code, r.text[:500])
    body = r.json()
    assert body["accepted"] + body["duplicates"] >= 1, body  # the good record beside it is stored
    assert all(x["index"] == hostile_index for x in body["rejected"]), body
    assert all(x["error"] for x in body["rejected"]), body


@pytest.fixture
def models(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        register(c, model_name + "-det", task="detection")
    return model_name, model_name + "-det"


@given(data=st.data())
@EXAMPLES
def test_every_prediction_string_field(api, models, data):
    cls, det = models
    kind = data.draw(st.sampled_from(["cls", "det"]))
    fields = PREDICTION_FIELDS + (DETECTION_FIELDS if kind == "det" else [])
    _field, place = data.draw(st.sampled_from(fields), label="field")
    text = data.draw(TEXT, label="text")
    base = cls_record(cls, "p") if kind == "cls" else det_record(det, "p")
    good = dict(base, prediction_id=f"good-{data.draw(st.uuids())}")
    hostile = place(dict(base, prediction_id=f"h-{data.draw(st.uuids())}"), text)
    with api.admin() as c:
        _check_batch(_post(c, "/v1/predictions", [good, hostile]), 1)


@given(data=st.data())
@EXAMPLES
def test_every_ground_truth_string_field(api, models, data):
    cls, det = models
    kind = data.draw(st.sampled_from(["cls", "det"]))
    fields = GROUND_TRUTH_FIELDS + (DETECTION_GT_FIELDS if kind == "det" else [])
    _field, place = data.draw(st.sampled_from(fields), label="field")
    text = data.draw(TEXT, label="text")
    if kind == "cls":
        base = {"prediction_id": "p", "model": cls, "label": "dent"}
    else:
        base = {"prediction_id": "p", "model": det, "boxes": [[0, 0, 1, 1]], "box_classes": ["dent"]}
    good = dict(base, prediction_id=f"good-{data.draw(st.uuids())}")
    hostile = place(dict(base, prediction_id=f"h-{data.draw(st.uuids())}"), text)
    with api.admin() as c:
        _check_batch(_post(c, "/v1/ground-truth", [good, hostile]), 1)


@given(data=st.data())
@EXAMPLES
def test_registration_strings(api, model_name, data):
    text = data.draw(TEXT, label="text")
    where = data.draw(st.sampled_from(["class", "task", "key"]), label="where")
    body: dict[str, Any] = {"task": "classification", "classes": [*CLASSES, text]}
    if where == "task":
        body = {"task": text, "classes": CLASSES}
    elif where == "key":
        body = {"task": "classification", "classes": CLASSES, text: 1}
    with api.admin() as c:
        r = c.put(
            f"/v1/models/{model_name}",
            content=json.dumps(body, ensure_ascii=True).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert r.status_code < 500, (r.status_code, r.text[:500])
        if r.status_code in (200, 201):  # stored: it reads back as sent
            assert c.get(f"/v1/models/{model_name}").json()["classes"][-1] == text


def _raw(text: str) -> str:
    """Percent-encoded bytes of ``text``; surrogates pass through as the invalid UTF-8 they encode to."""
    return quote_from_bytes(text.encode("utf-8", "surrogatepass"), safe="")


QUERIES = {
    "metrics": ["window", "version", "cohort", "metric", "class", "since", "until", "limit", "cursor"],
    "confusion-matrix": ["window", "version", "cohort", "end"],
    "reports": [],
    "reference": [],
}


@given(data=st.data())
@EXAMPLES
def test_every_query_and_path_parameter(api, models, data):
    cls, _ = models
    endpoint = data.draw(st.sampled_from(sorted(QUERIES)), label="endpoint")
    text = data.draw(TEXT, label="text")
    params = QUERIES[endpoint]
    target = data.draw(st.sampled_from([*params, "model", "report"]), label="parameter")
    model = _raw(text) if target == "model" else cls
    path = f"/v1/models/{model}/{endpoint}"
    if target == "report":
        path = f"/v1/models/{cls}/reports/{_raw(text)}"
    query = "" if target in ("model", "report") else f"?{target}={_raw(text)}"
    with api.admin() as c:
        r = c.get(path + query)
        assert r.status_code < 500, (path + query, r.status_code, r.text[:500])
        r = c.get(f"/v1/models/{_raw(text)}")
        assert r.status_code < 500, (r.status_code, r.text[:500])
