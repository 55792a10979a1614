"""`cvmon consume`: help, and configurations refused before anything connects."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from monitor.server.cli._root import cli
from monitor.server.consumers.message import filter_reaches


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(["nats", "--subjects", "cvmon.>"], "also matches the dead letters (cvmon.dead.>)", id="nats-wide-filter"),
        pytest.param(["nats", "--subjects", "*.dead.x.predictions"], "also matches the dead letters", id="nats-wildcard"),
        pytest.param(["mqtt", "--topic", "#"], "also matches the dead letters (cvmon/dead/#)", id="mqtt-everything"),
        pytest.param(["mqtt", "--topic", "cvmon/+/#"], "also matches the dead letters", id="mqtt-wildcard"),
        pytest.param(["mqtt", "--url", "amqp://broker"], "must look like mqtt://host:1883", id="mqtt-url"),
    ],
)
def test_refused_configurations(db, args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["consume", *args, "--metrics-port", "0"], env={"CVMON_DATABASE_URL": db.url})
    assert result.exit_code != 0
    assert message in result.output


@pytest.mark.parametrize(
    ("subject_filter", "reaches"),
    [("cvmon.ingest.>", False), ("cvmon.>", True), (">", True), ("cvmon.*.x", True), ("cvmon.dead", False),
     ("cvmon.dead.>", True), ("cvmon.ingest.*.predictions", False), ("*.*", False), ("*.*.*", True)],
)  # fmt: skip
def test_filter_reaches(subject_filter: str, reaches: bool) -> None:
    assert filter_reaches(subject_filter, "cvmon.dead", separator=".", one="*", rest=">") is reaches


def test_help_explains_the_message_format() -> None:
    result = CliRunner().invoke(cli, ["consume", "--help"])
    assert result.exit_code == 0
    assert "predictions" in result.output and "ground-truth" in result.output and "dead-letter" in result.output
    for broker in ("nats", "mqtt"):
        result = CliRunner().invoke(cli, ["consume", broker, "--help"])
        assert result.exit_code == 0 and "--models" in result.output and "--metrics-port" in result.output
