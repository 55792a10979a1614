"""The report of what ``cvmon demo`` leaves: six hours of the demo's traffic in the week, through
the real API and jobs (tests/reports/demo_week.py). A new user's first report: the label-free
estimate filled from the points the API serves, charts fitted to the hours there are."""

from __future__ import annotations

from datetime import timedelta

import html5lib
import pytest

from monitor.server.demo.traffic import CAMERAS
from monitor.server.reports import fmt
from monitor.server.reports.render import render_report
from tests.reports import demo_week as dw

pytestmark = pytest.mark.slow  # six hours of demo traffic through the API and the jobs (~40 s)

WEEK_END = dw.WEEK_START + timedelta(days=7)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with dw.demo_server(tmp_path_factory.mktemp("demo-hours"), short=True) as server:
        yield server


def api_estimate(demo, window: str, cohort: str) -> tuple[float | None, int]:
    """The week's estimate of a slice from GET /v1/models/digits/metrics: the mean of the
    window's ``estimated_accuracy`` points weighted by their samples."""
    answer = demo.client.get(
        "/v1/models/digits/metrics",
        params={
            "window": window,
            "metric": "estimated_accuracy",
            "cohort": cohort,
            "limit": 10_000,
            "since": dw.WEEK_START.isoformat(),
            "until": WEEK_END.isoformat(),
        },
    )
    assert answer.status_code == 200, answer.text
    points = [p for p in answer.json()["series"] if p["value"] is not None and p["cls"] == ""]
    n = sum(p["sample_count"] for p in points)
    return (sum(p["value"] * p["sample_count"] for p in points) / n if n else None), n


def test_the_estimate_column_is_the_weeks_estimate_the_api_serves(demo):
    data = demo.report()
    html = render_report(data)
    for camera in CAMERAS:
        assert api_estimate(demo, "1d", f"camera:{camera.name}") == (None, 0)  # the day is not over
        value, n = api_estimate(demo, "1h", f"camera:{camera.name}")
        assert value is not None and n >= 300, (camera.name, n)
        row = next(c for c in data.cohorts if c.value == camera.name)
        assert row.estimated == pytest.approx(value, abs=1e-12), camera.name
        assert f"<td>{fmt.pct(value)}</td>" in html
    value, n = api_estimate(demo, "1h", "")
    (version,) = data.versions
    assert (version.estimated.current, version.estimated.n) == (pytest.approx(value, abs=1e-12), n)
    cam3 = next(c for c in data.cohorts if c.value == "cam-3")
    assert cam3.estimated - cam3.primary.current > 0.02  # the estimate's reference no longer fits cam-3


def test_six_hours_are_charted_per_hour_over_those_hours(demo):
    data = demo.report()
    assert data.trend_window == "1h"
    (quality,) = data.quality_trend
    hours = [ts for ts, v in quality.points if v is not None]
    assert len(hours) >= 5 and max(hours) - min(hours) <= timedelta(hours=6)
    assert all(sum(v is not None for v in c.trend) >= 5 for c in data.cohorts)
    html = render_report(data)
    html5lib.HTMLParser(strict=True).parse(html)
    first, last = f"{min(hours) - timedelta(hours=1):%a %d %H:%M}", f"{max(hours) + timedelta(hours=2):%H:%M}"
    assert f"trend ({first} – {last})" in html
    assert "◂ week from Mon 16" in html and "week to Sun 22 ▸" in html
