"""GET /v1/models/{model}/reports and /reports/{id}: listing, the HTML and its headers, auth."""

from __future__ import annotations

from datetime import timedelta

import html5lib
import pytest

from monitor.server.jobs import run_once
from monitor.server.services.reports import save_report
from monitor.server.services.weeks import parse_week
from monitor.server.store.engine import write_transaction
from tests.reports import synth as s

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


@pytest.fixture
def reported(make_api, model_name):
    """A model with last week's report written by the job, and an older one stored by hand."""
    clock = s.SimClock(s.REPORT_TIME)
    api = make_api(clock=clock)
    with api.admin() as client:
        assert (
            client.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": s.CLASSES}).status_code
            == 201
        )
    (outcome,) = run_once(api.db.engine, api.settings, clock=clock, models=[model_name], jobs=["report"])
    assert outcome.status == "ok" and outcome.detail.startswith("report 2026-W47 written"), outcome
    with write_transaction(api.db.engine) as conn:
        save_report(
            conn,
            model_name,
            parse_week("2026-W45"),
            "<!DOCTYPE html><title>old</title>",
            generated_at=s.REPORT_TIME - timedelta(days=14),
        )
    return api


def test_the_list_shows_each_stored_week_newest_first(reported, model_name):
    with reported.client(reported.create_key(["read"])) as client:
        body = client.get(f"/v1/models/{model_name}/reports").json()
    assert body["model"] == model_name
    assert [r["id"] for r in body["reports"]] == ["2026-W47", "2026-W45"]
    newest = body["reports"][0]
    assert newest["week"] == "2026-W47" and newest["period_start"].startswith("2026-11-16T00:00:00")
    assert newest["period_end"].startswith("2026-11-23T00:00:00") and newest["generated_at"].startswith(
        "2026-11-23T06:00:00"
    )
    assert newest["size_bytes"] > 5_000 and newest["url"] == f"/v1/models/{model_name}/reports/2026-W47"


@pytest.mark.parametrize("report_id", [pytest.param("2026-W47", id="by-week"), pytest.param("latest", id="latest")])
def test_a_report_is_served_as_html_under_a_strict_content_security_policy(reported, model_name, report_id):
    with reported.client(reported.create_key(["read"], models=[model_name])) as client:
        answer = client.get(f"/v1/models/{model_name}/reports/{report_id}")
        listed = client.get(f"/v1/models/{model_name}/reports").json()["reports"][0]
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    assert answer.headers["content-security-policy"] == CSP
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-disposition"] == f'inline; filename="cvmon-{model_name}-2026-W47.html"'
    assert len(answer.content) == listed["size_bytes"]
    html5lib.HTMLParser(strict=True).parse(answer.text)
    assert f"{model_name} <span" in answer.text and "week 2026-W47" in answer.text


def test_reading_reports_needs_a_key_with_read_scope_for_that_model(reported, model_name):
    paths = [f"/v1/models/{model_name}/reports", f"/v1/models/{model_name}/reports/2026-W47"]
    with reported.client() as anonymous:
        assert [anonymous.get(p).status_code for p in paths] == [401, 401]
    with reported.client(reported.create_key(["ingest"])) as ingest_only:
        assert [ingest_only.get(p).status_code for p in paths] == [403, 403]
    with reported.client(reported.create_key(["read"], models=["some-other-model"])) as other_model:
        answers = [other_model.get(p) for p in paths]
    assert [a.status_code for a in answers] == [403, 403]
    assert all("not allowed to use model" in a.json()["detail"] for a in answers)


def test_unknown_reports_and_models_are_404_and_bad_ids_422(reported, model_name):
    with reported.admin() as client:
        assert client.get(f"/v1/models/{model_name}/reports/2026-W01").status_code == 404
        assert client.get("/v1/models/no-such-model/reports").status_code == 404
        assert client.get("/v1/models/no-such-model/reports/latest").status_code == 404
        assert client.get(f"/v1/models/{model_name}/reports/..%2Fetc").status_code in (404, 422)
        assert client.get(f"/v1/models/{model_name}/reports/W47").status_code == 422
