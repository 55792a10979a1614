"""SQL, template and markup injection through every string field is stored and shown inert.

Hostile text goes in as class names, cohort keys and values, model versions, request ids, input
hashes and prediction ids; it must come back byte for byte from the database and the JSON API,
and as correctly escaped label values on /metrics (a parser reads back exactly what was sent and
no injected line becomes a series of its own). Runs on PostgreSQL and SQLite.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from monitor.server.jobs import run_once
from monitor.server.store import tables as t

pytestmark = pytest.mark.slow  # the hostile suite: every endpoint driven with hostile input, servers per test

HOSTILE = [
    "'); DROP TABLE predictions;--",
    '"; DELETE FROM models; --',
    "{{7*7}}",
    "{% for i in range(3) %}x{% endfor %}",
    "${7*7}",
    "<script>alert(1)</script>",
    'a"b\\c\nd',  # quote, backslash and newline: the three characters Prometheus escapes
    "ünïcödé 名前 🙂",
    "\n# HELP cvmon_fake injected\n# TYPE cvmon_fake gauge\ncvmon_fake 1",
]


def _probabilities(top: int, n: int) -> list[float]:
    p = np.full(n, 0.1 / (n - 1))
    p[top] = 0.9
    return p.tolist()


@pytest.fixture
def hostile_model(api, model_name):
    """A model whose classes, versions, cohorts and ids are all hostile text, evaluated."""
    now = datetime.now(UTC)
    ts = (now - timedelta(minutes=30)).isoformat()
    records = []
    for i, text in enumerate(HOSTILE):
        records.append({
            "prediction_id": f"{text}#{i}", "model": model_name, "model_version": text[:64], "timestamp": ts,
            "probabilities": _probabilities(i, len(HOSTILE)), "request_id": text, "input_hash": text,
            "cohort": {"camera": text, text[:64]: text},
        })  # fmt: skip
    with api.admin() as c:
        assert c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": HOSTILE}).status_code == 201
        body = c.post("/v1/predictions", json={"records": records}).json()
        assert body == {"accepted": len(HOSTILE), "duplicates": 0, "rejected": []}
        labels = [
            {"prediction_id": f"{text}#{i}", "model": model_name, "label": text} for i, text in enumerate(HOSTILE)
        ]
        assert c.post("/v1/ground-truth", json={"records": labels}).json()["accepted"] == len(HOSTILE)
    outcomes = run_once(api.db.engine, api.settings, clock=lambda: now, models=[model_name], jobs=["evaluate"])
    assert [o.status for o in outcomes] == ["ok"]
    return model_name


def test_hostile_text_is_stored_verbatim(api, hostile_model):
    p = t.predictions.c
    with api.db.engine.connect() as conn:
        rows = conn.execute(sa.select(t.predictions).where(p.model == hostile_model).order_by(p.predicted_class)).all()
        tables = sa.inspect(conn).get_table_names()
        models = conn.execute(sa.select(t.models.c.classes).where(t.models.c.model == hostile_model)).scalar_one()
    assert "predictions" in tables and "models" in tables
    assert models == HOSTILE
    assert [r.prediction_id for r in rows] == [f"{text}#{i}" for i, text in enumerate(HOSTILE)]
    assert [r.model_version for r in rows] == [text[:64] for text in HOSTILE]
    assert [r.request_id for r in rows] == HOSTILE
    assert [r.input_hash for r in rows] == HOSTILE
    assert [r.cohort for r in rows] == [{"camera": text, text[:64]: text} for text in HOSTILE]


def test_hostile_text_comes_back_verbatim_from_the_json_api(api, hostile_model):
    with api.admin() as c:
        info = c.get(f"/v1/models/{hostile_model}").json()
        metrics = c.get(f"/v1/models/{hostile_model}/metrics", params={"metric": "precision", "window": "1d"}).json()
        per_cohort = c.get(
            f"/v1/models/{hostile_model}/metrics", params={"cohort": f"camera:{HOSTILE[2]}", "window": "1d"}
        ).json()
        confusion = c.get(f"/v1/models/{hostile_model}/confusion-matrix").json()
    assert info["classes"] == HOSTILE
    assert sorted(v["version"] for v in info["versions"]) == sorted(text[:64] for text in HOSTILE)
    assert {p["cls"] for p in metrics["latest"]} == set(HOSTILE)
    assert {p["version"] for p in metrics["latest"]} == {text[:64] for text in HOSTILE}
    assert {p["cohort"] for p in per_cohort["latest"]} == {f"camera:{HOSTILE[2]}"}
    assert confusion["classes"] == HOSTILE
    assert np.trace(np.array(confusion["matrix"])) == len(HOSTILE)  # every label matched its class by name


def test_hostile_text_is_escaped_in_prometheus_labels(api, hostile_model):
    with api.client(api.create_key(["read"], models=[hostile_model])) as c:
        text = c.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert "cvmon_fake" not in families
    assert not any(line.startswith("cvmon_fake") for line in text.splitlines())
    precision = [s for s in families["cvmon_precision_ratio"].samples if s.labels["model"] == hostile_model]
    assert {s.labels["class"] for s in precision} == set(HOSTILE)
    assert {s.labels["version"] for s in precision} == {text[:64] for text in HOSTILE}
    accuracy = [s for s in families["cvmon_accuracy_ratio"].samples if s.labels["model"] == hostile_model]
    assert {s.labels["camera"] for s in accuracy} == {"", *HOSTILE}
    counters = families["cvmon_predictions"].samples
    assert {s.labels["version"] for s in counters if s.labels["model"] == hostile_model} == {
        text[:64] for text in HOSTILE
    }


def test_a_hostile_model_name_is_refused_and_changes_nothing(api, model_name):
    with api.admin() as c:
        assert (
            c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": ["a", "b"]}).status_code == 201
        )
        for text in HOSTILE:
            r = c.put("/v1/models/" + quote(text, safe=""), json={"task": "classification", "classes": ["a"]})
            assert r.status_code in (404, 422), (text, r.status_code)
        rec = {"prediction_id": "x", "model": HOSTILE[0], "model_version": "v", "predicted_class": 0}
        body = c.post("/v1/predictions", json={"records": [rec]}).json()
        assert body["accepted"] == 0 and "unknown model" in body["rejected"][0]["error"]
        assert c.get("/v1/models").json()["models"].count(model_name) == 1
    with api.db.engine.connect() as conn:
        assert {"predictions", "models", "api_keys"} <= set(sa.inspect(conn).get_table_names())


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"task": "classification", "classes": ["a", "\\ud800"]}', id="class-lone-surrogate"),
        pytest.param(b'{"task": "classification\\udfff", "classes": ["a"]}', id="task-lone-surrogate"),
    ],
)
def test_unencodable_text_in_a_registration_is_a_422_not_a_500(api, model_name, body):
    with api.admin() as c:
        r = c.put(f"/v1/models/{model_name}", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_hostile_text_is_inert_in_the_weekly_report(api, hostile_model):
    """The HTML report (Jinja2, inline SVG charts) shows class, version and cohort names as text:
    no markup of theirs survives, no template expression of theirs is evaluated."""
    import html5lib

    from monitor.server.reports.build import build_report_data
    from monitor.server.reports.render import render_report
    from monitor.server.services.weeks import Week

    now = datetime.now(UTC)
    week = Week.containing(now)
    page = render_report(
        build_report_data(api.db.engine, hostile_model, week.start, settings=api.settings, clock=lambda: now)
    )
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "{{7*7}}" in page  # shown as written, not evaluated to 49
    tree = html5lib.parse(page, namespaceHTMLElements=False)
    scripts = [s for s in tree.iter("script") if "alert(1)" in (s.text or "")]
    assert scripts == []
    assert not [e for e in tree.iter() if any(k.lower().startswith("on") for k in e.attrib)]  # no injected handlers
    texts = "".join(tree.itertext())
    assert "'); DROP TABLE predictions;--" in texts and "{% for i in range(3) %}x{% endfor %}" in texts
