"""The inline SVG charts: pure functions, checked on their markup."""

from __future__ import annotations

import itertools
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from monitor.server.reports import charts
from monitor.server.reports.data import Series
from tests.reports.factory import reliability

START = datetime(2026, 11, 16, tzinfo=UTC)
DAY = timedelta(days=1)


def parse(svg: str) -> ET.Element:
    """Inline SVG in HTML needs no namespace; XML-parse it to check it is well formed."""
    return ET.fromstring(str(svg))


def days(values: list[float | None]) -> tuple[tuple[datetime, float | None], ...]:
    return tuple((START + i * DAY, v) for i, v in enumerate(values))


def test_a_line_chart_is_one_svg_with_a_polyline_per_run_of_defined_points():
    svg = charts.line_chart(
        [Series("v1", days([0.9, 0.91, None, 0.88, 0.87, 0.86, None]))],
        start=START,
        end=START + 7 * DAY,
        title="accuracy",
        unit="share",
    )
    root = parse(svg)
    assert root.tag == "svg" and root.find("title").text == "accuracy"
    polylines = root.findall("polyline")
    assert len(polylines) == 2  # the gap splits the line; None is never drawn as 0
    assert [len(p.get("points").split()) for p in polylines] == [2, 3]


def test_a_threshold_is_a_dashed_line_at_its_value_and_in_the_legend():
    svg = str(
        charts.line_chart(
            [Series("mmd:embedding", days([0.1, 0.1, 0.5]))],
            start=START, end=START + 3 * DAY, title="drift", unit="score",
            thresholds=[charts.Threshold(0.2, "threshold 0.200")], y_range=(0.0, 1.0), height=200,
        )
    )  # fmt: skip
    root = parse(svg)
    dashed = [line for line in root.iter("line") if line.get("stroke-dasharray") == "5 4"]
    assert len(dashed) == 1
    # plot height = 200 - 10 (top) - 22 (axis); y = 10 + plot * (1 - 0.2)
    assert float(dashed[0].get("y1")) == pytest.approx(10 + 168 * 0.8, abs=0.1)
    assert "threshold 0.200" in "".join(root.itertext())


def test_flagged_windows_are_shaded_as_one_shape_per_run():
    flagged = [(START + h * timedelta(hours=1), START + (h + 1) * timedelta(hours=1)) for h in (30, 31, 32, 60)]
    svg = charts.line_chart(
        [Series("ks:confidence", days([0.1, 0.2, 0.3]))],
        start=START,
        end=START + 3 * DAY,
        title="drift",
        unit="score",
        flagged=flagged,
    )
    (shade,) = [p for p in parse(svg).iter("path") if p.get("fill") == "#f2b8b0"]
    assert shade.get("d").count("M") == 2  # hours 30-32 merged, hour 60 alone


@pytest.mark.parametrize(
    ("ticks", "unit", "labels"),
    [
        pytest.param([0.88, 0.9, 0.92], "share", ["88%", "90%", "92%"], id="shares-whole-percent"),
        pytest.param([0.9, 0.905, 0.91], "share", ["90.0%", "90.5%", "91.0%"], id="shares-need-a-decimal"),
        pytest.param([19.5, 20.0, 20.5], "ms", ["19.5 ms", "20.0 ms", "20.5 ms"], id="ms-half-steps-stay-apart"),
        pytest.param([-0.1, 0.0, 0.1], "score", ["−0.1", "0.0", "0.1"], id="scores-with-minus-sign"),
    ],
)
def test_tick_labels_use_the_fewest_decimals_that_keep_ticks_apart(ticks, unit, labels):
    assert charts.tick_labels(ticks, unit) == labels


def test_nice_ticks_cover_the_range_with_round_steps():
    ticks = charts.nice_ticks(0.873, 0.958)
    assert ticks[0] <= 0.873 and ticks[-1] >= 0.958
    steps = {round(b - a, 9) for a, b in itertools.pairwise(ticks)}
    assert len(steps) == 1 and steps.pop() in (0.01, 0.02, 0.025, 0.05)


def test_the_heat_map_draws_only_nonzero_cells_one_path_per_colour_bucket():
    n = 100
    matrix = [[0] * n for _ in range(n)]
    for i in range(n):
        matrix[i][i] = 90
        matrix[i][(i + 1) % n] = 10  # 10 % of each class is confused with the next
    svg = str(charts.heatmap(matrix, [f"c{i}" for i in range(n)], title="confusion"))
    root = parse(svg)
    paths = [p for p in root.iter("path")]
    assert len(paths) == 2  # two buckets: >= 80 % (diagonal) and >= 10 %
    assert sum(p.get("d").count("M") for p in paths) == 2 * n  # 200 non-zero cells, nothing for the 9 800 zeros
    assert not root.findall("rect[@class='cell']") and len(svg) < 40_000


def test_a_small_heat_map_names_its_classes_and_writes_counts():
    svg = str(charts.heatmap([[5, 1], [0, 7]], ["cat", "dog"], title="confusion"))
    texts = list(parse(svg).itertext())
    assert {"cat", "dog", "5", "1", "7"} <= set(texts) and "0" not in texts


def test_every_text_is_escaped_so_names_cannot_become_markup():
    hostile = '<script>alert(1)</script>"&{{7*7}}'
    svg = str(
        charts.line_chart(
            [Series(hostile, days([0.5, 0.6]))], start=START, end=START + 2 * DAY, title=hostile, unit="share"
        )
        + charts.heatmap([[1, 0], [0, 1]], [hostile, "b"], title=hostile)
        + charts.sparkline([0.1, 0.2], title=hostile)
        + charts.budget_bar(0.5, title=hostile)
    )
    assert "<script" not in svg and "&lt;script&gt;" in svg
    assert 'aria-label="&lt;script&gt;alert(1)&lt;/script&gt;&#34;&amp;{{7*7}}"' in svg


def test_the_reliability_diagram_has_a_point_per_nonempty_bin_and_the_diagonal():
    curve = reliability()
    root = parse(charts.reliability_diagram([curve], title="reliability"))
    assert len(root.findall("circle")) == sum(1 for b in curve.bins if b.count)
    assert any(line.get("stroke-dasharray") == "4 3" for line in root.iter("line"))


def test_a_sparkline_of_nothing_or_of_one_value_is_empty_and_of_more_marks_the_last_value():
    assert charts.sparkline([None, None], title="x") == ""
    assert charts.sparkline([None, 0.9, None], title="x") == ""  # one dot is not a trend
    root = parse(charts.sparkline([0.9, None, 0.8, 0.7], title="x"))
    assert root.findall("circle")[-1].get("fill") == charts.ALERT


@pytest.mark.parametrize(
    ("remaining", "colour", "width"),
    [
        pytest.param(0.8, "#2e8b57", "96", id="healthy"),
        pytest.param(0.2, "#d08c00", "24", id="low"),
        pytest.param(-0.5, charts.ALERT, "0", id="overspent"),
    ],
)
def test_the_budget_bar_shows_what_is_left_and_turns_red_when_spent(remaining, colour, width):
    rects = parse(charts.budget_bar(remaining, title="budget")).findall("rect")
    assert rects[1].get("fill") == colour and rects[1].get("width") == width


def test_no_chart_refers_to_anything_outside_itself():
    svg = str(
        charts.line_chart([Series("v", days([1.0, 2.0]))], start=START, end=START + 2 * DAY, title="t", unit="ms")
        + charts.heatmap([[1]], ["a"], title="t")
        + charts.reliability_diagram([reliability()], title="t")
    )
    assert not re.search(r"(href|src|xmlns)=|url\(|https?:|<script|<image|<foreignObject", svg)


@pytest.mark.parametrize("top", [1.0, 0.995, 0.97])
def test_a_share_axis_never_goes_past_100_percent(top):
    svg = str(charts.line_chart([Series("v1", days([0.9, top, 0.92]))], start=START, end=START + 3 * DAY, title="a", unit="share"))
    labels = re.findall(r">(\d+(?:\.\d+)?)%<", svg)
    assert labels and max(float(x) for x in labels) <= 100.0, labels
    assert "100" in labels or top < 0.99  # the axis reaches 100 % only when the data nearly does


def test_short_spans_get_hour_ticks_and_long_ones_day_ticks():
    hours = str(charts.line_chart([Series("v1", ((START, 0.5),))], start=START, end=START + timedelta(hours=12), title="a", unit="share"))
    assert re.findall(r">(\d\d:00)<", hours)[:3] == ["02:00", "04:00", "06:00"] and ">Mon 16<" in hours
    days_svg = str(charts.line_chart([Series("v1", days([0.5]))], start=START, end=START + 7 * DAY, title="a", unit="share"))
    assert not re.findall(r">\d\d:00<", days_svg) and ">Tue 17<" in days_svg


HOUR = timedelta(hours=1)


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("text")]


def test_a_few_hours_get_hour_ticks_that_name_the_day_and_never_overlap():
    start = START + DAY + 10 * HOUR  # Tue 17 10:00
    points = tuple((start + (i + 1) * HOUR, 0.9 - 0.01 * i) for i in range(6))
    root = parse(
        charts.line_chart([Series("v1", points)], start=start, end=start + 8 * HOUR, title="accuracy", unit="share")
    )
    labels = [t for t in texts(root) if re.fullmatch(r"(\w{3} \d\d )?\d\d:00", t)]
    assert labels[0] == "Tue 17 10:00" and "14:00" in labels
    # laid out without overlap: each label starts after the previous one's estimated end
    xs = [float(t.get("x")) for t in root.iter("text") if (t.text or "") in labels]
    ends = [x + len(label) * charts._CHAR_PX * 10 / 11 for x, label in zip(xs, labels, strict=True)]
    assert all(b >= a for a, b in itertools.pairwise(ends[:1] + xs[1:])), (labels, xs)
    # a fortnight still gets day labels
    fortnight = charts.line_chart(
        [Series("v1", days([0.9] * 14))], start=START, end=START + 14 * DAY, title="accuracy", unit="share"
    )
    wide = texts(parse(fortnight))
    assert "Mon 16" in wide and not any(t.endswith(":00") for t in wide)


def test_marks_inside_the_axis_are_lines_and_outside_it_arrows_at_the_edge():
    start = START + DAY + 10 * HOUR
    end = start + 8 * HOUR
    marks = [(START, "week from Mon 16"), (START + 7 * DAY, "week to Sun 22"), (start + 4 * HOUR, "deploy")]
    series = [Series("v1", ((start + HOUR, 0.9), (start + 2 * HOUR, 0.8)))]
    root = parse(charts.line_chart(series, start=start, end=end, title="accuracy", unit="share", marks=marks))
    shown = texts(root)
    assert "◂ week from Mon 16" in shown and "week to Sun 22 ▸" in shown and "deploy" in shown
    dotted = [line for line in root.iter("line") if line.get("stroke-dasharray") == "2 3"]
    assert len(dotted) == 1  # only the mark inside the axis is a line
    # a bound that is the axis edge itself needs no mark
    week = charts.line_chart(
        [Series("v1", days([0.9, 0.8]))], start=START, end=START + 7 * DAY, title="accuracy", unit="share", marks=marks[:2]
    )
    edge = texts(parse(week))
    assert not any("week" in t for t in edge)
