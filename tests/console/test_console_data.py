"""The console's numbers against oracles: a seeded fleet evaluated by the real jobs (evaluate,
drift, slo), read back through the pages and the JSON they fetch, compared with scikit-learn on
the predictions and labels that were written (tests/console/seed.py)."""

from __future__ import annotations

import re
from datetime import timedelta

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from tests.console.seed import CLASSES, DRIFT_FROM, HOUR, NOW

pytestmark = pytest.mark.slow  # the module's fleet takes 15-30 s to write and evaluate

CURRENT = NOW.replace(minute=0)
ROLLING = (CURRENT + HOUR - timedelta(days=1), CURRENT + HOUR)


def accuracy(pairs):
    true, pred = zip(*pairs, strict=True)
    return accuracy_score(true, pred)


def test_the_fleet_row_reads_traffic_coverage_and_quality_as_the_oracle_counts_them(console):
    data = console.data
    with console.signed_in() as client:
        rows = {m["model"]: m for m in client.get("/fleet.json").json()["models"]}
        html = client.get("/").text
    shop = rows[data.shop]
    in_day = [r for r in data.rows.values() if ROLLING[0] <= r[0] < ROLLING[1]]
    assert shop["predictions_day"] == len(in_day)
    assert shop["predictions_hour"] == sum(1 for r in in_day if r[0] >= CURRENT)
    assert shop["label_coverage"] == pytest.approx(sum(r[5] for r in in_day) / len(in_day), abs=1e-12)
    pairs = data.labelled(start=ROLLING[0], end=ROLLING[1])
    assert shop["quality"]["samples"] == len(pairs)
    assert shop["quality"]["value"] == pytest.approx(accuracy(pairs), abs=1e-12)
    hourly = shop["quality"]["hourly"]
    assert len(hourly) == 24
    assert hourly[-1] == pytest.approx(accuracy(data.labelled(start=CURRENT, end=NOW)), abs=1e-12)
    assert hourly[0] == pytest.approx(accuracy(data.labelled(start=CURRENT - 23 * HOUR, end=CURRENT - 22 * HOUR)), abs=1e-12)
    # cam-b's accuracy SLO burns at a page's rate; its drift is flagged; v1 and v2 both live
    assert any(s["slo"].endswith("accuracy-cam-b") and "page" in s["firing"] for s in shop["slos"])
    assert {"version": "v1", "cohort": "camera:cam-b", "detector": "ks:confidence"} in shop["drift"]
    assert shop["versions_live"] == ["v1", "v2"]
    # the model that needs attention comes first
    assert [m for m in rows if m in (data.shop, data.other)] == [data.shop, data.other]  # the database is shared
    assert html.index(data.shop) < html.index(data.other)


def test_quality_charts_follow_the_window_version_and_cohort_controls(console):
    data = console.data
    with console.signed_in() as client:
        def lines(query: str) -> dict[str, list]:
            body = client.get(f"/models/{data.shop}/chart.json?id=quality&{query}").json()
            return {line["label"]: line["points"] for line in body["lines"]}

        whole = lines("window=1h")
        cam_b = lines("window=1h&cohort=camera:cam-b")
        v2 = lines("window=1h&version=v2")
        daily = lines("window=1d&range=30d")
    assert set(whole) == {"v1", "v2"} and set(v2) == {"v2"}
    assert whole != cam_b
    for label, points in cam_b.items():
        for ms, value, n in points:
            start = _utc(ms)
            pairs = data.labelled(start=start, end=start + HOUR, version=label, camera="cam-b")
            assert n == len(pairs)
            assert (value is None and not pairs) or value == pytest.approx(accuracy(pairs), abs=1e-12)
    ms, value, n = [p for p in daily["v1"] if p[1] is not None][-1]
    pairs = data.labelled(start=_utc(ms), end=_utc(ms) + timedelta(days=1), version="v1")
    assert n == len(pairs) and value == pytest.approx(accuracy(pairs), abs=1e-12)


def _utc(ms: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC)


def test_the_class_table_and_the_confusion_matrix_of_a_window_match_scikit_learn(console):
    data = console.data
    at = CURRENT - 2 * HOUR
    query = f"window=1h&at={at:%Y-%m-%dT%H:%MZ}&cohort=camera:cam-b&version=v1"
    with console.signed_in() as client:
        page = client.get(f"/models/{data.shop}/classes?{query}")
        assert page.status_code == 200, page.text
        pairs = data.labelled(start=at, end=at + HOUR, version="v1", camera="cam-b")
        true, pred = map(np.array, zip(*pairs, strict=True))
        precision, recall, f1, support = precision_recall_fscore_support(true, pred, labels=range(4), zero_division=np.nan)
        for i, name in enumerate(CLASSES):
            row = re.search(rf'<th scope="row">{name}</th>(.*?)</tr>', page.text, re.S).group(1)
            cells = re.findall(r'class="num[^"]*">([^<]*)<', row)
            assert cells[:4] == [f"{precision[i] * 100:.1f} %", f"{recall[i] * 100:.1f} %", f"{f1[i] * 100:.1f} %", str(support[i])]
        matrix = confusion_matrix(true, pred, labels=range(4))
        off = max((matrix[i, j], i, j) for i in range(4) for j in range(4) if i != j)
        link = f"{CLASSES[off[1]]} predicted as {CLASSES[off[2]]}</a>: {off[0]}"
        assert link in page.text
        cell = client.get(f"/models/{data.shop}/predictions.json?{query}&true={off[1]}&pred={off[2]}").json()
        expected = {pid for pid, (ts, v, cam, t, p, lab) in data.rows.items()
                    if lab and at <= ts < at + HOUR and v == "v1" and cam == "cam-b" and t == off[1] and p == off[2]}  # fmt: skip
        assert {r["prediction_id"] for r in cell["predictions"]} == expected
        assert len(expected) == off[0]
        listed = client.get(f"/models/{data.shop}/predictions?{query}&true={off[1]}&pred={off[2]}")
        assert all(pid in listed.text for pid in expected)


def test_the_slo_page_shows_the_budget_and_burn_rates_of_the_counted_events(console):
    data = console.data
    labelled = [r for r in data.rows.values() if r[5] and r[0] >= NOW - timedelta(days=7)]
    bad = sum(1 for r in labelled if r[3] != r[4])
    remaining = 1 - (bad / len(labelled)) / 0.05
    cam_b = [r for r in labelled if r[2] == "cam-b"]
    with console.signed_in() as client:
        page = client.get(f"/models/{data.shop}/slos").text
    section = page[page.index(f'{data.shop}-accuracy</h2>'):page.index(f'{data.shop}-accuracy-cam-b</h2>')]
    assert f"{remaining * 100:.1f} %" in section.replace("\u2212", "-")
    assert f"{bad:,}".replace(",", "\u202f") + " bad of " + f"{len(labelled):,}".replace(",", "\u202f") in section
    cam_section = page[page.index(f'{data.shop}-accuracy-cam-b</h2>'):page.index(f'{data.shop}-latency</h2>')]
    assert "firing" in cam_section and str(len(cam_b)).replace(",", "") in cam_section.replace("\u202f", "")


def test_the_drift_page_and_the_timeline_show_the_flagged_camera_and_its_reference(console):
    data = console.data
    with console.signed_in() as client:
        drift = client.get(f"/models/{data.shop}/drift?window=1h").text
        chart = client.get(f"/models/{data.shop}/chart.json?id=drift:ks:confidence&window=1h").json()
        timeline = client.get(f"/models/{data.shop}/incidents").text
        fleet_timeline = client.get("/incidents").text
    row = re.search(r"<th scope=\"row\">ks:confidence</th><td>camera = cam-b</td><td><code>v1</code></td>\s*<td class=\"num\">(\d+) / (\d+)</td><td>([^<]*)</td>", drift)
    assert row, drift
    flagged, scored, first = int(row.group(1)), int(row.group(2)), row.group(3)
    assert scored >= flagged
    assert flagged >= 5 and first >= f"{DRIFT_FROM:%Y-%m-%d %H:%M} UTC"
    assert "the version's first predictions" in drift and "ks:confidence" in drift
    by_label = {line["label"]: line["points"] for line in chart["lines"]}
    assert {"v1 cam-a", "v1 cam-b", "v1 all traffic"} <= set(by_label)
    late = [p[1] for p in by_label["v1 cam-b"] if p[1] is not None and _utc(p[0]) >= DRIFT_FROM]
    early = [p[1] for p in by_label["v1 cam-b"] if p[1] is not None and _utc(p[0]) < DRIFT_FROM]
    assert min(late) > max(early)
    for page in (timeline, fleet_timeline):
        assert "drift: ks:confidence" in page and "camera=cam-b, v1" in page and "new version v2" in page


def test_pages_render_for_every_control_and_stay_small(console):
    data = console.data
    with console.signed_in() as client:
        for path in ("", "/classes", "/calibration", "/drift", "/service", "/slos", "/incidents", "/reports"):
            for query in ("", "window=1d&range=30d", "window=7d", "version=v2&cohort=camera:cam-a", "window=1h&range=6h&end=2026-11-25T06:00Z"):
                answer = client.get(f"/models/{data.shop}{path}?{query}")
                assert answer.status_code == 200, (path, query, answer.text[-800:])
                assert len(answer.content) < 300_000
        calibration = client.get(f"/models/{data.shop}/calibration?window=1h").text
        assert "Reliability diagram" in calibration and "<th scope=\"row\">v1</th>" in calibration
