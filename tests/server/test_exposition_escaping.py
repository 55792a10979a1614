"""Label values on /metrics survive every reader: property tests over arbitrary unicode.

The text format escapes backslash, double quote and line feed only. A carriage return (or any
other character Python splits lines at) written raw is accepted by promtool but breaks a reader
that splits lines the way Python does (prometheus_client's parser over a page decoded with
universal newlines), which then rejects the whole page; a lone surrogate cannot be encoded at
all. cvmon writes those characters as their escape sequence, as text
(monitor/server/exporters/escaping.py). Each example builds a page, parses it with
prometheus_client (from the string, and from the UTF-8 bytes through a universal-newline text
stream, as a file or HTTP body is read) and with ``promtool check metrics``, whose exit status
must be 0, and checks every value reads back as :func:`displayable` of what was stored.
"""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_fd_to_metric_families, text_string_to_metric_families

from monitor.server.exporters.collectors import QualityExposition
from monitor.server.exporters.escaping import displayable, escape_label_value
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.latest import replace_latest
from tests.slo.golden import require_promtool

END = datetime(2026, 11, 20, 15, tzinfo=UTC)
#: What Python's str.splitlines splits at besides "\n", the characters the text format cannot escape.
LINE_BREAKS = "\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"
#: Any unicode a Python string can hold, surrogates included, with the troublesome ones often.
ANY_TEXT = st.text(st.one_of(st.characters(exclude_categories=()), st.sampled_from(LINE_BREAKS + '\\"\n{}=,')), max_size=24)
#: What a database stores: no NUL (PostgreSQL text) and no lone surrogate (not UTF-8).
STORABLE = st.text(
    st.one_of(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), st.sampled_from(LINE_BREAKS + '\\"\n')),
    max_size=24,
)


def parsed(page: str) -> list[dict[str, str]]:
    """The label sets of every sample, read both ways prometheus_client reads a page; they agree."""
    from_string = [s.labels for f in text_string_to_metric_families(page) for s in f.samples]
    stream = io.TextIOWrapper(io.BytesIO(page.encode("utf-8")), encoding="utf-8")  # universal newlines
    from_stream = [s.labels for f in text_fd_to_metric_families(stream) for s in f.samples]
    assert from_string == from_stream
    return from_string


def promtool_check(page: str) -> None:
    check = subprocess.run([require_promtool(), "check", "metrics"], input=page.encode("utf-8"), capture_output=True)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()


def page_of(values: Iterable[str]) -> str:
    lines = ["# HELP cvmon_accuracy_ratio Top-1 accuracy.\n", "# TYPE cvmon_accuracy_ratio gauge\n"]
    lines += [f'cvmon_accuracy_ratio{{camera="{escape_label_value(v)}",n="{i}"}} 0.5\n' for i, v in enumerate(values)]
    return "".join(lines)


@settings(max_examples=50, deadline=None)
@given(values=st.lists(ANY_TEXT, min_size=1, max_size=16))
def test_any_label_value_reads_back_in_prometheus_client_and_promtool(values):
    page = page_of(values)
    assert [labels["camera"] for labels in parsed(page)] == [displayable(v) for v in values]
    promtool_check(page)


def test_line_breaks_and_surrogates_are_spelled_out_and_nothing_else_changes():
    assert displayable("cam-1") == "cam-1"
    assert displayable('a "b" \\ {c}\nd ünïcode ☃') == 'a "b" \\ {c}\nd ünïcode ☃'  # escaped by the format itself
    assert displayable("a\rb\x0bc\x0cd\x85e\u2028f\u2029g\x1c") == "a\\rb\\vc\\fd\\x85e\\u2028f\\u2029g\\x1c"
    assert displayable("x\ud800y") == "x\\ud800y"
    assert escape_label_value('a\r"b"\n\\') == 'a\\\\r\\"b\\"\\n\\\\'


def test_a_raw_carriage_return_is_what_breaks_prometheus_client():
    """The counter-test: written raw, as the format alone would, the page is refused by one of the
    two readers, so the property above does test something."""
    raw = '# TYPE cvmon_accuracy_ratio gauge\ncvmon_accuracy_ratio{camera="a\rb"} 0.5\n'
    stream = io.TextIOWrapper(io.BytesIO(raw.encode()), encoding="utf-8")
    try:
        list(text_fd_to_metric_families(stream))
    except ValueError:
        return
    raise AssertionError("prometheus_client read a raw carriage return: the escaping test proves nothing")


def _store(engine, model: str, cohort_values: list[str], version: str) -> None:
    rows = [
        {"model": model, "window": "1h", "version": version, "cohort_key": "camera", "cohort_value": value,
         "metric": metric, "class": "", "window_start": END - timedelta(hours=1), "window_end": END,
         "value": 0.5, "sample_count": 10, "label_coverage": 1.0, "computed_at": END}
        for value in dict.fromkeys(cohort_values)
        for metric in ("accuracy", "latency_p95_ms")
    ]  # fmt: skip
    with write_transaction(engine) as conn:
        replace_latest(conn, model, ["1h"], t.metric_latest.c.metric.is_not(None), rows)


def test_stored_cohort_values_and_versions_render_for_every_reader(db, model_name):
    exposition = QualityExposition(("camera",))

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(values=st.lists(STORABLE, min_size=1, max_size=6), version=STORABLE)
    def check(values: list[str], version: str) -> None:
        _store(db.engine, model_name, values, version)
        with db.engine.connect() as conn:
            page = exposition.text(conn, lambda m: m == model_name)
        got = parsed(page)
        assert {(labels["camera"], labels["version"]) for labels in got} == {
            (displayable(v), displayable(version)) for v in values
        }
        assert len(got) == 2 * len(set(values))  # accuracy and the p95 latency of each value
        promtool_check(page)

    check()
