"""The rendered Argo Rollouts and Flagger gates: valid for their CRDs, right about cvmon's answers.

The CRDs are the projects' own manifests (tests/canary/schemas/README.md). The Argo template's
conditions are run (tests/canary/argo.py) on what a real cvmon server answers for a passing, a
failing and an inconclusive canary.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from monitor.server.cli import _canary_templates as tpl
from monitor.server.rollout_config import CanaryConfig, CanaryPolicy
from tests.canary import argo, traffic

pytestmark = pytest.mark.slow  # Argo and Flagger templates against a served cvmon

SCHEMAS = Path(__file__).parent / "schemas"


def _crd_schema(file: str, kind: str) -> dict[str, Any]:
    with gzip.open(SCHEMAS / file, "rt", encoding="utf-8") as f:
        documents = [d for d in yaml.safe_load_all(f) if d]
    crd = next(d for d in documents if d["spec"]["names"]["kind"] == kind)
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    return version["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def analysis_template_schema() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(argo.strict_schema(_crd_schema("argo-rollouts-analysis-template-crd.yaml.gz", "AnalysisTemplate")))


@pytest.fixture(scope="module")
def flagger_webhook_schema() -> jsonschema.Draft7Validator:
    canary = _crd_schema("flagger-crd.yaml.gz", "Canary")
    webhook = canary["properties"]["spec"]["properties"]["analysis"]["properties"]["webhooks"]["items"]
    return jsonschema.Draft7Validator(argo.strict_schema(webhook))


def _rendered(*args: str) -> str:
    from monitor.server.cli._root import cli

    result = CliRunner().invoke(cli, ["canary", "template", *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("mode", ["proceed", "pause"])
@pytest.mark.parametrize("versions", [(), ("--baseline", "v3", "--candidate", "v4")], ids=["rollout-args", "fixed-versions"])
def test_argo_analysis_template_validates_against_the_crd(analysis_template_schema, mode, versions):
    text = _rendered("--format", "argo", "--model", "shelf", "--url", "https://cvmon.example", "--inconclusive", mode, *versions)
    document = yaml.safe_load(text)
    errors = sorted(analysis_template_schema.iter_errors(document), key=str)
    assert not errors, [e.message for e in errors]
    web = document["spec"]["metrics"][0]["provider"]["web"]
    assert web["url"].startswith("https://cvmon.example/v1/models/shelf/compare?baseline={{args.baseline}}")
    assert web["headers"] == [{"key": "Authorization", "value": "Bearer {{args.cvmon-api-key}}"}]
    secret = document["spec"]["args"][-1]["valueFrom"]["secretKeyRef"]
    assert secret == {"name": "cvmon-api-key", "key": "key"}


def test_the_strict_schema_catches_a_misspelt_field(analysis_template_schema):
    """The validation is not vacuous: a typo and a wrong type are refused."""
    document = tpl.argo_analysis_template(url="https://c", model="m", baseline=None, candidate=None, secret="s")
    document["spec"]["metrics"][0]["sucessCondition"] = document["spec"]["metrics"][0].pop("successCondition")
    assert list(analysis_template_schema.iter_errors(document))
    document = tpl.argo_analysis_template(url="https://c", model="m", baseline=None, candidate=None, secret="s")
    document["spec"]["metrics"][0]["provider"]["web"]["headers"] = {"Authorization": "Bearer x"}
    assert list(analysis_template_schema.iter_errors(document))


def test_flagger_webhook_validates_against_the_canary_crd(flagger_webhook_schema):
    text = _rendered("--format", "flagger", "--model", "shelf", "--url", "http://cvmon.cvmon:8000",
                     "--baseline", "v3", "--candidate", "v4", "--api-key", "cvm_x", "--inconclusive", "pause")  # fmt: skip
    hook = yaml.safe_load(text)["webhooks"][0]
    errors = [e.message for e in flagger_webhook_schema.iter_errors(hook)]
    assert not errors, errors
    assert hook["url"] == "http://cvmon.cvmon:8000/v1/models/shelf/canary/flagger"
    assert hook["metadata"] == {"baseline": "v3", "candidate": "v4", "api_key": "cvm_x", "strict": "true"}
    bad = {**hook, "type": "during-rollout"}
    assert list(flagger_webhook_schema.iter_errors(bad))


def test_flagger_template_needs_its_versions_and_key():
    from monitor.server.cli._root import cli

    result = CliRunner().invoke(cli, ["canary", "template", "--format", "flagger", "--model", "m", "--url", "http://c"])
    assert result.exit_code == 2
    assert "--baseline, --candidate, --api-key" in result.output


def test_condition_subset_matches_expr_semantics():
    result = {"verdict": "fail", "decision": -1, "alpha": 0.05}
    assert argo.condition('result.verdict != "fail"', result) is False
    assert argo.condition('result.verdict == "fail" && result.decision < 0', result) is True
    assert argo.condition("!(result.decision >= 0) || false", result) is True
    with pytest.raises(KeyError):
        argo.condition('result.verdit == "fail"', result)
    with pytest.raises(TypeError):
        argo.condition("result.verdict", result)


# --------------------------------------------------------------------------------------------
# the template's conditions on cvmon's real answers

#: Only label-free gates with loose tolerances, so a few thousand predictions can pass.
GATES = CanaryConfig(CanaryPolicy(min_predictions=200, gates={
    "accuracy": None, "map": None, "error_rate": 0.05, "latency_p95": 0.5, "confidence": 0.2, "class_mix": None, "agreement": None,
}))  # fmt: skip


def _answer(api: Any, model: str, document: dict[str, Any], key: str) -> dict[str, Any]:
    """GET the web provider's URL with the template's args and header filled in, as Argo does."""
    web = document["spec"]["metrics"][0]["provider"]["web"]
    url = web["url"].replace("{{args.baseline}}", "v1").replace("{{args.candidate}}", "v2")
    headers = {h["key"]: h["value"].replace("{{args.cvmon-api-key}}", key) for h in web["headers"]}
    with api.client() as client:
        r = client.get(url.removeprefix(api.url), headers=headers)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("candidate", "n", "verdict"),
    [
        pytest.param(traffic.Version("v2"), 3000, "pass", id="pass"),
        pytest.param(traffic.Version("v2", confidence_a=2.0), 3000, "fail", id="fail"),
        pytest.param(traffic.Version("v2"), 150, "inconclusive", id="inconclusive"),
    ],
)
def test_argo_conditions_on_cvmons_answer(make_api, model_name, candidate, n, verdict):
    api = make_api(canary=GATES)
    key = api.create_key(["read"], models=[model_name])
    start = traffic.start_time()
    with api.admin() as client:
        traffic.register(client, model_name)
        traffic.send(client, *traffic.records(model_name, traffic.Version("v1"), n, start=start, seed=1))
        traffic.send(client, *traffic.records(model_name, candidate, n, start=start, seed=2))
    expected = {
        "proceed": {"pass": "Successful", "inconclusive": "Successful", "fail": "Failed"},
        "pause": {"pass": "Successful", "inconclusive": "Inconclusive", "fail": "Failed"},
    }
    for mode, phases in expected.items():
        document = tpl.argo_analysis_template(
            url=api.url, model=model_name, baseline=None, candidate=None, secret="s", inconclusive=mode, count=3
        )
        answer = _answer(api, model_name, document, key)
        assert answer["verdict"] == verdict
        metric = document["spec"]["metrics"][0]
        phase = argo.measurement_phase(metric, answer)
        assert phase == phases[verdict], (mode, answer["verdict"])
        # three polls of the same answer: the analysis's outcome
        run = argo.metric_phase(metric, [phase] * 3)
        assert run == {"Successful": "Successful", "Failed": "Failed", "Inconclusive": "Inconclusive"}[phase]
