"""The console in real Chromium: signing in and out, the fleet, the controls changing the charts,
hover values, silences added and expired, a CSRF failure, a bound key, the network, phone width,
keyboard and contrast."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from tests.console.browser import chromium, contrast, not_blank, sign_in, tab  # noqa: F401 (fixture)
from tests.console.seed import CLASSES

pytestmark = pytest.mark.slow  # the console served and driven over HTTP or in Chromium


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
def test_signing_in_shows_the_fleet_without_a_request_leaving_this_machine(chromium, make_api, model_name):  # noqa: F811
    """Fast: a registered model with a few predictions, no evaluation."""
    api = make_api()
    with api.admin() as client:
        assert client.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES}).status_code == 201
        now = datetime.now(UTC).isoformat()
        records = [{"prediction_id": f"p{i}", "model": model_name, "model_version": "v1", "timestamp": now,
                    "probabilities": [0.7, 0.1, 0.1, 0.1], "cohort": {"camera": "cam-a"}} for i in range(5)]  # fmt: skip
        assert client.post("/v1/predictions", json={"records": records}).json()["accepted"] == 5
    with tab(chromium) as t:
        t.page.goto(api.url + "/")
        assert t.page.url.startswith(api.url + "/login")
        t.page.fill("#key", "cvm_wrong")
        with t.page.expect_navigation():
            t.page.click("form[action='/login'] button[type=submit]")
        assert "not a valid API key" in t.page.inner_text("[role=alert]")
        t.console.clear()  # the refused sign-in answered 401, which the browser logs
        sign_in(t, api.url, api.create_key(["read"]), path="/")
        assert t.page.url == api.url + "/"
        assert t.page.inner_text("h1") == "Fleet"
        row = t.page.inner_text(f"tr:has(a[href='/models/{model_name}'])")
        assert model_name in row and "v1" in row
        not_blank(t.page.screenshot(full_page=True))
        assert t.hosts() == {api.url.removeprefix("http://")}, t.requests
        assert not [m for m in t.console if m.startswith("error")], t.console


SQLITE = pytest.mark.parametrize("console", ["sqlite"], indirect=True)


@pytest.mark.slow
@SQLITE
def test_signing_out_ends_the_session(chromium, console):  # noqa: F811
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["read"])
        with t.page.expect_navigation():
            t.page.click("form[action='/logout'] button")
        assert "You are signed out" in t.page.inner_text("main")
        t.page.goto(console.url + f"/models/{console.data.shop}")
        assert "/login?next=" in t.page.url


def _chart(t, caption: str) -> str:
    return t.page.inner_html(f"figure:has(figcaption:text-matches('{caption}'))")


@pytest.mark.slow
@SQLITE
def test_switching_window_version_and_cohort_changes_the_charts_and_the_url(chromium, console):  # noqa: F811
    shop = console.data.shop
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["read"], path=f"/models/{shop}")
        before = _chart(t, "accuracy per 1h window by version$")
        assert "<polyline" in before
        for name, value, expect in (("cohort", "camera:cam-b", "cohort=camera%3Acam-b"), ("version", "v2", "version=v2"),
                                    ("window", "1d", "window=1d")):  # fmt: skip
            with t.page.expect_navigation():
                t.page.select_option(f"form.controls select[name={name}]", value)  # the script applies it at once
            assert expect in t.page.url, t.page.url
            after = t.page.inner_html("figure")
            assert after != before, name
            before = after
        assert "accuracy per 1d window by version (v2, camera=cam-b)" in t.page.inner_text("figure figcaption")
        # the link is the state: opening it again shows the same chart
        again = t.page.context.new_page()
        again.goto(t.page.url)
        assert again.inner_html("figure") == before
        again.close()


@pytest.mark.slow
@SQLITE
def test_a_chart_answers_hover_and_arrow_keys_with_the_value_and_sample_count(chromium, console):  # noqa: F811
    shop = console.data.shop
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["read"], path=f"/models/{shop}?window=1h&version=v1")
        svg = t.page.locator("svg.chart[data-src]").first
        svg.focus()
        tip = t.page.locator("#tip")
        tip.wait_for(state="visible")
        last = tip.inner_text()
        assert re.search(r"v1: \d+\.\d % \(n=\d+\)", last), last
        t.page.keyboard.press("ArrowLeft")
        t.page.wait_for_function("t => document.getElementById('tip').innerText !== t", arg=last)
        assert tip.inner_text() != last
        box = svg.bounding_box()
        t.page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.3)
        t.page.wait_for_function("() => /n=\\d+/.test(document.getElementById('tip').innerText)")
        t.page.keyboard.press("Escape")
        assert any("/chart.json?" in u for u in t.requests)


@pytest.mark.slow
@SQLITE
def test_adding_and_expiring_a_silence_from_the_page(chromium, console):  # noqa: F811
    shop = console.data.shop
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["admin"], path=f"/models/{shop}/slos")
        t.page.select_option("#silence-duration", "30m")
        t.page.select_option("#silence-slo", f"{shop}-accuracy-cam-b")
        t.page.fill("#silence-comment", "cleaning the cam-b lens")
        with t.page.expect_navigation():
            t.page.click("form.add-silence button")
        notice = t.page.inner_text("[role=status].ok")
        silence_id = notice.rsplit(" ", 1)[1]
        row = t.page.locator(f"tr:has(code:text-is('{silence_id}'))")
        assert "cleaning the cam-b lens" in row.inner_text() and "active" in row.inner_text()
        with t.page.expect_navigation():
            row.locator("button", has_text="Expire now").click()
        assert f"expired: {silence_id}" in t.page.inner_text("[role=status].ok")
        assert "ended" in t.page.locator(f"tr:has(code:text-is('{silence_id}'))").inner_text()


@pytest.mark.slow
@SQLITE
def test_a_form_with_a_tampered_csrf_token_is_refused_and_changes_nothing(chromium, console):  # noqa: F811
    shop = console.data.shop
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["admin"], path=f"/models/{shop}/slos")
        rows = t.page.locator("table tr:has-text('csrf probe')").count()
        t.page.fill("#silence-comment", "csrf probe")
        t.page.eval_on_selector("form.add-silence input[name=csrf]", "e => e.value = 'forged' + e.value.slice(6)")
        with t.page.expect_navigation():
            t.page.click("form.add-silence button")
        assert "CSRF check failed" in t.page.inner_text("[role=alert]")
        t.page.goto(console.url + f"/models/{shop}/slos")
        assert t.page.locator("table tr:has-text('csrf probe')").count() == rows == 0


@pytest.mark.slow
@SQLITE
def test_a_bound_key_cannot_see_another_model_in_pages_or_in_the_json_they_fetch(chromium, console):  # noqa: F811
    shop, other = console.data.shop, console.data.other
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["bound"])
        fleet = t.page.inner_text("main")
        assert other in fleet and shop not in fleet
        answer = t.page.goto(console.url + f"/models/{shop}")
        assert answer.status == 404 and "that this key may see" in t.page.inner_text("main")
        assert t.page.locator(".model-head, svg.chart").count() == 0
        fetched = t.page.evaluate("""async (paths) => Promise.all(paths.map(async p => {
            const r = await fetch(p); return [r.status, (await r.text()).slice(0, 200)]; }))""",
            [f"/models/{shop}/chart.json?id=quality", f"/models/{shop}/predictions.json?at=2026-11-25T10:00Z&true=0&pred=1",
             "/fleet.json", f"/models/{other}/chart.json?id=quality"])  # fmt: skip
        assert [s for s, _ in fetched] == [404, 404, 200, 200]
        assert shop not in fetched[2][1] and other in fetched[2][1]


PAGES = ("/", "/incidents", "/models/{m}", "/models/{m}/classes", "/models/{m}/calibration", "/models/{m}/drift",
         "/models/{m}/service", "/models/{m}/slos", "/models/{m}/incidents", "/models/{m}/reports")  # fmt: skip


@pytest.mark.slow
@SQLITE
@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_stays_on_this_machine_reads_at_phone_width_and_is_not_blank(chromium, console, width, tmp_path):  # noqa: F811
    shop = console.data.shop
    with tab(chromium, width=width, height=844) as t:
        sign_in(t, console.url, console.keys["admin"])
        for path in PAGES:
            t.page.goto(console.url + path.format(m=shop))
            assert t.page.locator("main h1").count() == 1, path
            png = t.page.screenshot(full_page=True)
            (tmp_path / f"{path.replace('/', '_') or 'fleet'}-{width}.png").write_bytes(png)
            not_blank(png)
            overflow = t.page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, (path, width, overflow)  # wide tables scroll inside their own region
            ratio, where = contrast(t)
            assert ratio >= 4.5, (path, ratio, where)
        assert t.hosts() == {console.url.removeprefix("http://")}, sorted(set(t.requests))
        assert not [m for m in t.console if m.startswith("error")], t.console


@pytest.mark.slow
@SQLITE
def test_the_keyboard_reaches_the_content_the_tabs_and_the_controls(chromium, console):  # noqa: F811
    shop = console.data.shop
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["read"], path=f"/models/{shop}")
        t.page.keyboard.press("Tab")
        assert t.page.evaluate("() => document.activeElement.textContent") == "Skip to content"
        t.page.keyboard.press("Enter")
        assert t.page.evaluate("() => document.activeElement.id") == "main"
        seen = []
        for _ in range(40):
            t.page.keyboard.press("Tab")
            seen.append(t.page.evaluate("() => [document.activeElement.tagName, document.activeElement.textContent.trim().slice(0, 20), document.activeElement.getAttribute('name')]"))
        texts = [s[1] for s in seen]
        assert "Classes" in texts and "Drift" in texts and "SLOs" in texts
        assert sorted({s[0] for s in seen if s[2] == "cohort"}) == ["SELECT"]
        assert any(s[0] == "svg" for s in seen)  # charts take focus for their hover values


@pytest.mark.slow
@SQLITE
def test_a_confusion_matrix_cell_opens_its_predictions(chromium, console):  # noqa: F811
    shop = console.data.shop
    with tab(chromium) as t:
        sign_in(t, console.url, console.keys["read"], path=f"/models/{shop}/classes?window=1h&cohort=camera:cam-b")
        heatmap = t.page.locator("svg.chart[data-href]")
        margin, cell = float(heatmap.get_attribute("data-margin")), float(heatmap.get_attribute("data-cell"))
        box = heatmap.bounding_box()
        scale = box["width"] / float(heatmap.evaluate("e => e.viewBox.baseVal.width"))
        row, col = 1, 3  # dog predicted as owl
        with t.page.expect_navigation():
            t.page.mouse.click(box["x"] + (margin + (col + 0.5) * cell) * scale, box["y"] + (margin + (row + 0.5) * cell) * scale)
        assert "true=1" in t.page.url and "pred=3" in t.page.url and "cohort=camera%3Acam-b" in t.page.url
        assert t.page.inner_text("main h2") == f"Labelled {CLASSES[row]}, predicted {CLASSES[col]}"
        listed = t.page.locator("table tbody tr").count()
        link = t.page.get_by_role("link", name="As JSON")
        body = t.page.evaluate("async u => (await fetch(u)).json()", link.get_attribute("href"))
        assert len(body["predictions"]) == listed and body["true_class"] == CLASSES[row] and body["predicted_class"] == CLASSES[col]
