"""``cvmon report``: the on-demand report, its options and its messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import html5lib
import pytest
from click.testing import CliRunner

from monitor.server.cli._root import cli
from monitor.server.services.models import register_model
from monitor.server.services.reports import list_reports
from monitor.server.services.weeks import last_complete_week
from monitor.server.store.engine import write_transaction
from tests.reports.synth import CLASSES


@pytest.fixture
def runner(db, model_name, tmp_path, monkeypatch):
    """A CLI runner on the database under test, in an empty directory (no ./cvmon.yaml)."""
    with write_transaction(db.engine) as conn:
        register_model(conn, model_name, "classification", CLASSES, 0.5, now=datetime.now(UTC) - timedelta(days=30))
    monkeypatch.chdir(tmp_path)
    return CliRunner(env={"CVMON_DATABASE_URL": db.url, "CVMON_CONFIG": ""})


def test_a_week_is_written_to_the_file_named_with_timing_on_stderr(runner, model_name, tmp_path):
    out = tmp_path / "w45.html"
    result = runner.invoke(cli, ["report", "--model", model_name, "--week", "2026-W45", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert f"building the report of {model_name} for 2026-W45 (Mon 02 Nov - Sun 08 Nov 2026, UTC)" in result.stderr
    assert "rendered in" in result.stderr and f"written to {out}" in result.stderr
    html = out.read_text(encoding="utf-8")
    html5lib.HTMLParser(strict=True).parse(html)
    assert "week 2026-W45" in html


def test_the_default_is_last_weeks_report_in_the_current_directory(runner, model_name, tmp_path):
    result = runner.invoke(cli, ["report", "--model", model_name])
    assert result.exit_code == 0, result.output
    week = last_complete_week(datetime.now(UTC)).name
    assert (tmp_path / f"cvmon-report-{model_name}-{week}.html").exists()


def test_dash_writes_the_html_to_stdout_and_store_keeps_it(runner, db, model_name):
    result = runner.invoke(cli, ["report", "--model", model_name, "--week", "2026-W47", "--out", "-", "--store"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("<!DOCTYPE html>") and "stored in the database" in result.stderr
    with db.engine.connect() as conn:
        assert [r.week for r in list_reports(conn, model_name)] == ["2026-W47"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["--model", "no-such-model"], "Error: no model 'no-such-model'", id="unknown-model"),
        pytest.param(
            ["--week", "2026-47"], "Invalid value for --week: week '2026-47' must look like 2026-W47", id="bad-week"
        ),
    ],
)
def test_mistakes_are_one_line_errors(runner, model_name, args, message):
    args = ["--model", model_name, *args] if args[0] != "--model" else args
    result = runner.invoke(cli, ["report", *args])
    assert result.exit_code != 0 and message in result.output
    assert "Traceback" not in result.output


def test_help_explains_the_report():
    result = CliRunner().invoke(cli, ["report", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())  # as read, whatever the terminal width
    for words in (
        "ISO week, e.g. 2026-W47",
        "Default: the last complete week",
        "--out FILE",
        "no scripts, fonts or images",
        "GET /v1/models/MODEL/reports",
    ):
        assert words in text


def test_a_week_without_traffic_says_which_weeks_have_data_and_the_command(runner, db, model_name, tmp_path):
    from monitor.server.services.ingest import write_predictions
    from monitor.server.store.partitions import PartitionManager
    from monitor.wire import Prediction

    result = runner.invoke(cli, ["report", "--model", model_name, "--week", "2026-W45", "--out", str(tmp_path / "a.html")])
    assert f"note: {model_name} has no predictions yet" in result.stderr
    at = datetime(2026, 11, 18, 10, tzinfo=UTC)  # Wednesday of 2026-W47
    p = Prediction(prediction_id="p1", model=model_name, model_version="v1", ts=at, ts_defaulted=False, status=0,
                   predicted_class=0, confidence=0.9)  # fmt: skip
    write_predictions(db.engine, [p], now=at, partitions=PartitionManager(db.engine))
    result = runner.invoke(cli, ["report", "--model", model_name, "--week", "2026-W45", "--out", str(tmp_path / "b.html")])
    assert result.exit_code == 0, result.output
    assert f"note: {model_name} had no traffic in 2026-W45; its predictions are in 2026-W47" in result.stderr
    assert f"report --model {model_name} --week 2026-W47" in result.stderr
    result = runner.invoke(cli, ["report", "--model", model_name, "--week", "2026-W47", "--out", str(tmp_path / "c.html")])
    assert "note: the predictions of 2026-W47 are not evaluated yet; run `" in result.stderr
    assert f"jobs run-once --model {model_name}`" in result.stderr
    from monitor.server.jobs import run_once
    from monitor.server.settings import Settings

    run_once(db.engine, Settings(database_url=db.url), clock=lambda: at + timedelta(days=1), models=[model_name], jobs=["evaluate"])
    result = runner.invoke(cli, ["report", "--model", model_name, "--week", "2026-W47", "--out", str(tmp_path / "d.html")])
    assert "note:" not in result.stderr
