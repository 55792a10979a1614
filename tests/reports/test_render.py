"""The rendered document: valid HTML, self-contained, inert, and small."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta

import html5lib
import pytest

from monitor.server.reports.data import ClassRow, Series, WeekValue
from monitor.server.reports.render import render_report, time_axis
from tests.reports.factory import HOUR, WEEK_START, cohort, drift_trend, report, version

SECTIONS = ["summary", "quality", "calibration", "drift", "service", "actions"]
#: Attributes that make a browser fetch (or navigate to) what they name.
FETCHING = frozenset({"src", "srcset", "href", "action", "formaction", "poster", "data", "xlink:href", "background"})
HOSTILE = [
    "<script>alert(1)</script>",
    "{{7*7}}",
    "{{ 1234 * 10 }}",
    '"><img src=x onerror=alert(1)>',
    "{% raw %}",
    "a\u202eb",
]


def parse(html: str):
    """html5lib's strict parser raises on any parse error (bad nesting, stray end tags, ...)."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)


def external_references(document) -> list[str]:
    """Every attribute value or style that could make the browser fetch something."""
    found = []
    for element in document.iter():
        for name, value in element.attrib.items():
            fetching = name in FETCHING
            if fetching and not (name == "href" and value.startswith("#")):
                found.append(f"{element.tag}[{name}]={value}")
            if re.search(r"url\(|@import|https?:|//", value) and name != "content":
                found.append(f"{element.tag}[{name}]={value}")
        if element.tag == "style" and re.search(r"url\(|@import", element.text or ""):
            found.append("style: url() or @import")
        if element.tag in ("script", "link", "iframe", "object", "embed", "img", "image", "video", "audio", "base"):
            found.append(element.tag)
    return found


@pytest.mark.parametrize("n_classes", [pytest.param(10, id="10-classes"), pytest.param(100, id="100-classes")])
def test_the_report_is_valid_html_with_every_section_and_its_verdict_first(n_classes):
    html = render_report(report(n_classes))
    document = parse(html)
    assert html.startswith("<!DOCTYPE html>")
    sections = document.findall(".//section")
    assert [s.get("id") for s in sections] == SECTIONS
    for section in sections:
        heading, verdict = list(section)[:2]
        assert heading.tag == "h2" and verdict.tag == "p" and "verdict" in verdict.get("class")
        assert verdict.text and verdict.text.strip().endswith(".")


def test_the_report_refers_to_nothing_outside_itself():
    html = render_report(report(100))
    assert external_references(parse(html)) == []
    assert "<script" not in html.lower() and "http" not in html


@pytest.mark.parametrize("name", [pytest.param(n, id=f"hostile-{i}") for i, n in enumerate(HOSTILE)])
def test_user_supplied_names_print_as_text_and_never_as_markup(name):
    data = report(10)
    data = replace(
        data,
        model=f"model {name}",
        classes=(ClassRow(name, WeekValue(0.5, 0.9, 40, 40), WeekValue(0.5, 0.9, 40, 40)), *data.classes[1:]),
        confusion=replace(data.confusion, classes=(name, *data.confusion.classes[1:])),
        versions=(version(name),),
        cohorts=(cohort(name, 0.7, 0.95, drift=data.cohorts[1].drift, version_name=name),),
        drift=(replace(drift_trend(), version=name, feature=name),),
    )
    html = render_report(data)
    document = parse(html)
    assert "<script" not in html and "<img" not in html and external_references(document) == []
    text = "".join(document.itertext())
    assert name in text  # shown literally, as the user wrote it
    assert "12340" not in html  # nothing in a name is evaluated as a template expression
    if name == "{{7*7}}":
        assert "{{7*7}}" in html


def test_a_hundred_classes_with_every_section_full_stay_well_under_a_megabyte():
    """The worst case the size budget is for: 100 classes, a 100 x 100 confusion matrix with
    every cell filled, three versions, 50 cameras, seven detectors scored hourly."""
    data = report(100)
    n = 100
    full = tuple(tuple(900 if i == j else 1 + (i * j) % 7 for j in range(n)) for i in range(n))
    hourly = tuple((WEEK_START + h * HOUR, 0.1 + 0.001 * h) for h in range(168))
    data = replace(
        data,
        confusion=replace(data.confusion, counts=full),
        versions=(version("v1"), version("v2"), version("v3")),
        cohorts=tuple(cohort(f"camera-{k:02d}", 0.9, 0.92, version_name=v) for k in range(50) for v in ("v1", "v2", "v3")),
        drift=tuple(
            replace(drift_trend(), detector=d, feature=f, version=v, points=hourly, flagged=tuple(t for t, _ in hourly[::3]))
            for d, f in [("mmd", "embedding"), ("pca_ks", "embedding"), ("ks", "confidence"), ("psi", "class_mix"),
                         ("chi_square", "class_mix"), ("wasserstein", "confidence"), ("classifier", "embedding")]
            for v in ("v1", "v2", "v3")
        ),
    )  # fmt: skip
    html = render_report(data)
    size = len(html.encode("utf-8"))
    assert size < 1_000_000, size
    parse(html)


def test_a_detection_report_shows_ap_and_no_confusion_matrix():
    data = report(5)
    classes = tuple(replace(c, ap=WeekValue(0.4, 0.5, c.recall.n, c.recall.previous_n)) for c in data.classes)
    data = replace(data, task="detection", classes=classes, confusion=None, reliability=(), estimate_trend=())
    document = parse(render_report(data))
    headers = [th.text for th in document.iter("th")]
    assert "AP" in headers and "Confusion matrix" not in "".join(document.itertext())


def test_a_week_without_traffic_still_renders_and_says_so():
    data = replace(
        report(3),
        versions=(),
        overall=WeekValue(None),
        overall_label_coverage=WeekValue(None),
        classes=(),
        confusion=None,
        cohorts=(),
        drift=(),
        drift_window=None,
        slos=(),
        reliability=(),
        quality_trend=(),
        coverage_trend=(),
        calibration_trend=(),
        estimate_trend=(),
        latency_trend=(),
        error_trend=(),
    )
    document = parse(render_report(data))
    verdicts = [p.text for p in document.iter("p") if "verdict" in (p.get("class") or "")]
    assert verdicts[0] == "No predictions were stored for digits this week."
    assert verdicts[-1] == "Nothing needs action this week."


def test_the_report_prints_on_paper():
    html = render_report(report(10))
    assert "@media print" in html and "@page" in html and "print-color-adjust: exact" in html


def test_the_period_is_monday_to_sunday_utc():
    text = "".join(parse(render_report(report(10))).itertext())
    assert (
        "Mon 16 Nov 2026 – Sun 22 Nov 2026 (UTC)" in text and (WEEK_START + timedelta(days=6)).strftime("%a") == "Sun"
    )


def test_the_reference_check_itself_catches_what_it_looks_for():
    bad = (
        '<!DOCTYPE html><html><head><title>x</title><link rel="stylesheet" href="s.css">'
        "<style>body { background: url(x.png) }</style></head><body>"
        '<img src="http://example.com/x.png"><a href="//cdn.example.com/x">x</a><a href="#ok">ok</a>'
        '<div style="background:url(https://e.com/i.png)"></div></body></html>'
    )
    found = "\n".join(external_references(parse(bad)))
    for what in (
        "link[href]=s.css",
        "style: url()",
        "img[src]=http://example.com/x.png",
        "a[href]=//cdn.example.com/x",
        "div[style]=",
    ):
        assert what in found
    assert "#ok" not in found


DAY = timedelta(days=1)


@pytest.mark.parametrize(
    ("offsets", "step", "axis"),
    [
        pytest.param([], HOUR, (-7 * DAY, 7 * DAY), id="no-data-whole-range"),
        pytest.param([-7 * DAY + i * DAY for i in range(14)], DAY, (-7 * DAY, 7 * DAY), id="two-weeks"),
        pytest.param([-DAY, 6 * DAY], DAY, (-7 * DAY, 7 * DAY), id="half-filled-whole-range"),
        pytest.param([DAY + h * HOUR for h in range(11, 17)], HOUR, (DAY + 10 * HOUR, DAY + 18 * HOUR), id="six-hours"),
        pytest.param([0 * DAY, 2 * DAY], DAY, (-DAY, 4 * DAY), id="three-days-with-a-day-each-side"),
        pytest.param([6 * DAY + 23 * HOUR], HOUR, (6 * DAY + 22 * HOUR, 7 * DAY), id="clipped-to-the-range"),
    ],
)
def test_the_time_axis_fits_the_data_unless_it_fills_half_the_range(offsets, step, axis):
    lo, hi = WEEK_START - 7 * DAY, WEEK_START + 7 * DAY
    assert time_axis([WEEK_START + o for o in offsets], step, lo, hi) == (WEEK_START + axis[0], WEEK_START + axis[1])


def test_six_hours_of_data_are_charted_over_those_hours_and_one_day_is_not_charted():
    start = WEEK_START + DAY + 11 * HOUR
    hours = tuple((start + h * HOUR, 0.95 - 0.01 * h) for h in range(6))
    data = replace(
        report(10),
        trend_window="1h",
        quality_trend=(Series("mlp-v1", hours),),
        coverage_trend=(Series("mlp-v1", hours[:1]),),  # one window: no chart
        calibration_trend=(),
        estimate_trend=(),
        latency_trend=(),
        error_trend=(),
        cohorts=tuple(replace(c, trend=(None,) * 203 + tuple(v for _, v in hours) + (None,) * 127) for c in report(10).cohorts),
    )
    document = parse(render_report(data))
    captions = [f.find("figcaption").text or "" for f in document.iter("figure") if f.find("figcaption") is not None]
    assert any(c.startswith("accuracy per 1h window") for c in captions)
    assert not any(c.startswith("label coverage") for c in captions)
    text = "".join(document.itertext())
    assert "trend (Tue 17 10:00 – 18:00)" in text and "Only Tue 17 10:00 – 18:00 (UTC) of the two weeks has data" in text
    chart = next(f for f in document.iter("figure") if (f.findtext("figcaption") or "").startswith("accuracy per"))
    svg = next(e for e in chart.iter() if local(e.tag) == "svg")
    assert "◂ week from Mon 16" in [t.text for t in svg.iter() if local(t.tag) == "text"]
    xs = [float(p.split(",")[0]) for e in svg.iter() if local(e.tag) == "polyline" for p in e.get("points").split()]
    assert max(xs) - min(xs) > 0.5 * float(svg.get("width"))  # six hours fill the plot, not a sliver of a fortnight
    sparks = [e for e in document.iter() if local(e.tag) == "svg" and "spark" in (e.get("class") or "")]
    lines = [next(p for p in s.iter() if local(p.tag) == "polyline") for s in sparks]
    assert len(sparks) == 3 and all(len(p.get("points").split()) == 6 for p in lines)


def local(tag: str) -> str:
    """An element's name without the namespace html5lib gives SVG content."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def test_cost_per_version_and_the_most_disputed_classes_are_shown():
    html = render_report(report(10))
    assert "cost / 1\u202f000 inferences" in html and "0.0508 USD" in html and "0.0490 USD" in html
    quality = html[html.index("<h3>Label quality") : html.index('<section id="calibration">')]
    assert "most disputed classes" in quality and "Annotators agreed on 88.0% of label pairs" in quality
    assert quality.index("class-004") < quality.index("class-007") and "61.0%" in quality
    bare = render_report(report(10, labels=None, currency=None))
    assert "most disputed" not in bare and "cost / 1" not in bare
