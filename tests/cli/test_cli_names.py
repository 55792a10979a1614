"""Every command that names a model, a version or an SLO checks that it exists and says what does
(a typo must not silence nothing for two hours), on both databases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from monitor.server.cli._root import cli

SLOS = "slos:\n  - {{name: {model}-accuracy, model: {model}, sli: accuracy, objective: 0.95, window: 30d}}\n"


@pytest.fixture
def run(db, tmp_path, monkeypatch, model_name):
    """``cvmon`` in-process against the test database, with ``model_name`` registered and one SLO."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CVMON_DATABASE_URL", db.url)
    (tmp_path / "cvmon.yaml").write_text(SLOS.format(model=model_name))
    monkeypatch.setenv("CVMON_CONFIG", str(tmp_path / "cvmon.yaml"))
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(cli, list(args), prog_name="cvmon", catch_exceptions=False)
        assert result.exit_code == code, (args, result.output)
        return result.output

    invoke("models", "register", model_name, "--task", "classification", "--classes", "a,b")
    return invoke


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["silence", "add", "--model", "{typo}", "--for", "2h"], id="silence-add"),
        pytest.param(["silence", "list", "--model", "{typo}"], id="silence-list"),
        pytest.param(["jobs", "run-once", "--model", "{model}", "--model", "{typo}"], id="jobs-run-once"),
        pytest.param(["models", "show", "{typo}"], id="models-show"),
        pytest.param(["report", "--model", "{typo}", "--week", "2026-W47"], id="report"),
        pytest.param(["keys", "create", "--scopes", "read", "--models", "{model},{typo}"], id="keys-create"),
    ],
)
def test_a_model_that_does_not_exist_is_refused_with_the_models_that_do(run, model_name, args):
    typo = model_name + "-typo"
    out = run(*(a.format(model=model_name, typo=typo) for a in args), code=1)
    (line,) = [x for x in out.splitlines() if x.startswith("Error:")]
    # the model it was meant to be comes first (other tests' models may fill the list itself)
    assert f"no model '{typo}' (did you mean '{model_name}'?); registered models: " in line


def test_nothing_is_silenced_by_a_typo_and_force_silences_a_model_before_it_exists(run, model_name):
    typo = model_name + "-typo"
    run("silence", "add", "--model", typo, "--for", "2h", code=1)
    assert typo not in run("silence", "list", "--all")
    out = run("silence", "add", "--model", typo, "--for", "2h", "--force")
    assert f"note: no model '{typo}'" in out and f"silenced every SLO of model {typo}" in out
    assert typo in run("silence", "list", "--model", typo)  # listed, although not registered


def test_an_slo_that_does_not_exist_is_refused_with_the_models_slos(run, model_name):
    out = run("silence", "add", "--model", model_name, "--slo", "accuracy", "--for", "30m", code=1)
    assert f"model '{model_name}' has no SLO 'accuracy'" in out and f"its SLOs: {model_name}-accuracy" in out
    assert "silenced SLO accuracy" in run("silence", "add", "--model", model_name, "--slo", "accuracy", "--for", "30m", "--force")
    assert "silenced SLO" in run("silence", "add", "--model", model_name, "--slo", f"{model_name}-accuracy", "--for", "30m")


def test_a_key_bound_to_a_model_registered_later_needs_force(run, model_name):
    later = model_name + "-later"
    run("keys", "create", "--scopes", "admin", "--models", later, code=1)
    key = run("keys", "create", "--scopes", "admin", "--models", later, "--force").strip().splitlines()[-1]
    assert key.startswith("cvm_")


def test_the_canary_gate_names_the_versions_there_are(run, make_api, model_name):
    record = {"prediction_id": "p-1", "model": model_name, "model_version": "v3", "probabilities": [0.7, 0.3],
              "timestamp": datetime.now(UTC).isoformat()}  # fmt: skip
    with make_api().admin() as client:
        assert client.post("/v1/predictions", json={"records": [record]}).json()["accepted"] == 1
    out = run("canary", "check", "--model", model_name, "--baseline", "v3", "--candidate", "v4", code=3)
    assert f"version 'v4' of '{model_name}' has sent no prediction yet; its versions: v3" in out
    out = run("canary", "check", "--model", model_name + "-typo", "--baseline", "v3", "--candidate", "v4", code=3)
    assert f"no model '{model_name}-typo' (did you mean '{model_name}'?); registered models: " in out
