"""cvmon db / keys / models from the command line, against a real SQLite file."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from monitor.server.cli._root import cli


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVMON_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.delenv("CVMON_CONFIG", raising=False)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(cli, list(args), prog_name="cvmon", catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def test_every_command_explains_itself(run):
    top = run("--help").output
    for name in ("serve", "db", "keys", "models"):
        assert name in top
    for args in (["serve"], ["db", "upgrade"], ["keys", "create"], ["keys", "revoke"], ["models", "register"]):
        out = run(*args, "--help").output
        assert "Usage: cvmon" in out and len(out.splitlines()) > 4


def test_commands_refuse_an_unmigrated_database(run):
    result = run("keys", "list", ok=False)
    assert result.exit_code == 1 and "cvmon db upgrade" in result.output


def test_keys_lifecycle(run):
    assert "empty -> " in run("db", "upgrade").output
    for model in ("a", "b"):
        run("models", "register", model, "--task", "classification", "--classes", "x,y")
    created = run("keys", "create", "--scopes", "ingest,read", "--models", "a,b", "--name", "camera-fleet").output
    key = created.strip().splitlines()[-1]
    assert key.startswith("cvm_") and len(key) == 4 + 12 + 1 + 43
    key_id = key.split("_")[1]
    listing = run("keys", "list").output
    assert key_id in listing and "ingest,read" in listing and "a,b" in listing and key not in listing
    assert f"revoked {key_id}" in run("keys", "revoke", key_id).output
    again = run("keys", "revoke", key_id, ok=False)
    assert again.exit_code == 1 and "no active key" in again.output


def test_bad_scope_is_refused(run):
    run("db", "upgrade")
    result = run("keys", "create", "--scopes", "write", ok=False)
    assert result.exit_code == 1 and "scopes must be among ingest, read, admin" in result.output


def test_models_register_list_show(run, tmp_path):
    run("db", "upgrade")
    classes = tmp_path / "classes.txt"
    classes.write_text("scratch\ndent\n\nok\n")
    assert "registered shelf" in run("models", "register", "shelf", "--task", "classification", "--classes", f"@{classes}").output
    assert "updated shelf" in run("models", "register", "shelf", "--task", "classification", "--classes", "scratch,dent,ok,rust").output
    conflict = run("models", "register", "shelf", "--task", "classification", "--classes", "dent,scratch", ok=False)
    assert conflict.exit_code == 1 and "only be appended" in conflict.output
    assert "shelf" in run("models", "list").output
    shown = run("models", "show", "shelf").output
    assert "scratch, dent, ok, rust" in shown and "classification" in shown
