"""Strings from the command line, the environment and cvmon.yaml reach the database too: text it
cannot store (NUL; lone surrogates, which is how bytes that are not UTF-8 arrive in argv and the
environment) is refused with a message naming the option or setting, and nothing is written."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from monitor.errors import ConfigError
from monitor.server.cli._root import cli
from monitor.server.settings import Settings
from monitor.server.store import tables as t

BAD = [pytest.param("a\x00b", id="nul"), pytest.param("cam\udcff", id="undecodable-byte")]


@pytest.fixture
def run(db, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVMON_DATABASE_URL", db.url)
    monkeypatch.delenv("CVMON_CONFIG", raising=False)

    def invoke(*args: str):
        return CliRunner().invoke(cli, list(args), prog_name="cvmon", catch_exceptions=False)

    return invoke


def _count(db, table) -> int:
    with db.engine.connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


@pytest.mark.parametrize("text", BAD)
@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["keys", "create", "--scopes", "read", "--name", "{}"], id="keys-name"),
        pytest.param(["keys", "create", "--scopes", "read", "--models", "a,{}"], id="keys-models"),
        pytest.param(["keys", "create", "--scopes", "read,{}"], id="keys-scopes"),
        pytest.param(["keys", "revoke", "{}"], id="keys-revoke"),
        pytest.param(["models", "register", "{}", "--task", "classification", "--classes", "a,b"], id="model-name"),
        pytest.param(["models", "register", "m-ok", "--task", "classification", "--classes", "a,{}"], id="class-name"),
        pytest.param(["models", "show", "{}"], id="models-show"),
        pytest.param(["silence", "add", "--model", "m-ok", "--for", "1h", "--comment", "{}"], id="silence-comment"),
        pytest.param(["silence", "add", "--model", "m-ok", "--for", "1h", "--by", "{}"], id="silence-by"),
        pytest.param(["report", "--model", "{}", "--out", "r.html"], id="report-model"),
    ],
)
def test_command_line_text_the_database_cannot_store_is_a_usage_error(run, db, args, text):
    keys, models = _count(db, t.api_keys), _count(db, t.models)
    result = run(*[a.replace("{}", text) for a in args])
    assert result.exit_code in (1, 2), result.output
    assert "NUL" in result.output or "surrogate" in result.output, result.output
    assert (_count(db, t.api_keys), _count(db, t.models)) == (keys, models)


def test_a_model_name_the_api_cannot_address_is_refused(run, db):
    result = run("models", "register", "has space", "--task", "classification", "--classes", "a,b")
    assert result.exit_code == 2 and "not a model name" in result.output


def test_a_classes_file_that_is_not_utf8_is_a_clean_error(run, tmp_path):
    (tmp_path / "classes.txt").write_bytes(b"ok\n\xff\xfe\n")
    result = run("models", "register", "m-file", "--task", "classification", "--classes", f"@{tmp_path / 'classes.txt'}")
    assert result.exit_code == 1 and "cannot read classes" in result.output


@pytest.mark.parametrize(
    ("yaml_text", "where"),
    [
        pytest.param('cohort_keys: ["camera\\0"]\n', "cohort_keys[0]", id="nul-escape"),
        pytest.param('cohort_keys: ["cam\\ud800"]\n', "cohort_keys[0]", id="surrogate-escape"),
        pytest.param('"site\\0": 1\n', "a key of the top level", id="nul-in-a-key"),
        pytest.param('reports:\n  day: "mon\\0"\n', "reports.day", id="nested"),
    ],
)
def test_cvmon_yaml_text_the_database_cannot_store_is_a_config_error(tmp_path, yaml_text, where):
    path = tmp_path / "cvmon.yaml"
    path.write_text(yaml_text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        Settings.load({"CVMON_CONFIG": str(path)})
    assert where in str(info.value) and str(path) in str(info.value)


def test_cvmon_yaml_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "cvmon.yaml"
    path.write_bytes(b"cohort_keys: [\xff]\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        Settings.load({"CVMON_CONFIG": str(path)})


@pytest.mark.parametrize("text", BAD)
def test_an_environment_value_the_database_cannot_store_is_a_config_error(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="CVMON_COHORT_KEYS"):
        Settings.load({"CVMON_COHORT_KEYS": text})
