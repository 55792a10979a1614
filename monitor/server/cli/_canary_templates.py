"""Argo Rollouts AnalysisTemplates and Flagger webhooks that gate a rollout on cvmon's verdict.

Pure: documents (dicts) and their YAML text; ``cvmon canary template`` writes them.
"""

from __future__ import annotations

from typing import Any, Literal
from urllib.parse import quote

import yaml

Inconclusive = Literal["proceed", "pause"]


def argo_analysis_template(
    *,
    url: str,
    model: str,
    baseline: str | None,
    candidate: str | None,
    secret: str,
    secret_key: str = "key",
    interval: str = "1m",
    count: int = 60,
    inconclusive: Inconclusive = "proceed",
    name: str | None = None,
) -> dict[str, Any]:
    """An AnalysisTemplate whose ``web`` metric polls ``GET /v1/models/{model}/compare``.

    ``proceed``: only a fail fails the measurement (``result.verdict != "fail"``); the rollout
    goes on while the evidence is inconclusive. ``pause``: a measurement succeeds on pass, fails
    on fail and is inconclusive otherwise; the analysis succeeds when some poll passed and none
    failed, and is Inconclusive (the rollout pauses for a person) when no poll passed.
    Versions left out are arguments the Rollout passes (``args``).
    """
    args: list[dict[str, Any]] = []
    for arg, value in (("baseline", baseline), ("candidate", candidate)):
        args.append({"name": arg, "value": value} if value else {"name": arg})
    args.append({"name": "cvmon-api-key", "valueFrom": {"secretKeyRef": {"name": secret, "key": secret_key}}})
    metric: dict[str, Any] = {
        "name": "cvmon-canary",
        "interval": interval,
        "count": count,
        "failureLimit": 0,
        "provider": {
            "web": {
                "url": f"{url.rstrip('/')}/v1/models/{quote(model, safe='')}/compare"
                "?baseline={{args.baseline}}&candidate={{args.candidate}}",
                "headers": [{"key": "Authorization", "value": "Bearer {{args.cvmon-api-key}}"}],
                "timeoutSeconds": 30,
                "jsonPath": "{$}",
            }
        },
    }
    if inconclusive == "proceed":
        metric["successCondition"] = 'result.verdict != "fail"'
    else:
        metric["successCondition"] = 'result.verdict == "pass"'
        metric["failureCondition"] = 'result.verdict == "fail"'
        metric["inconclusiveLimit"] = count - 1
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AnalysisTemplate",
        "metadata": {"name": name or f"cvmon-canary-{_dns_label(model)}"},
        "spec": {"args": args, "metrics": [metric]},
    }


def flagger_webhook(
    *, url: str, model: str, baseline: str, candidate: str, api_key: str, strict: bool = False, timeout: str = "30s"
) -> dict[str, Any]:
    """A Flagger ``rollout`` webhook (an entry of a Canary's ``spec.analysis.webhooks``): Flagger
    calls it at every analysis interval and counts an answer above 202 as a failed check.
    Flagger webhooks carry no headers, so the API key travels in the metadata."""
    metadata = {"baseline": baseline, "candidate": candidate, "api_key": api_key}
    if strict:
        metadata["strict"] = "true"
    return {
        "name": "cvmon-canary",
        "type": "rollout",
        "url": f"{url.rstrip('/')}/v1/models/{quote(model, safe='')}/canary/flagger",
        "timeout": timeout,
        "metadata": metadata,
    }


def render_argo(document: dict[str, Any], *, secret: str, secret_key: str = "key") -> str:
    header = (
        "# cvmon canary gate for Argo Rollouts (docs/canary.md). The API key is read from a Secret:\n"
        f"#   kubectl create secret generic {secret} --from-literal={secret_key}=<a read key bound to the model>\n"
        "# Reference it from a Rollout's canary steps: analysis: {templates: [{templateName: "
        f"{document['metadata']['name']}}}]}}\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=200)


def render_flagger(webhook: dict[str, Any]) -> str:
    header = (
        "# cvmon canary gate for Flagger (docs/canary.md): add this entry to your Canary's\n"
        "# spec.analysis.webhooks. cvmon answers 200 pass, 202 inconclusive (412 fail; 425 when\n"
        "# inconclusive with strict: \"true\"); Flagger rolls back after spec.analysis.threshold failed checks.\n"
        "# Flagger cannot send headers: use a `read` key bound to this one model.\n"
    )
    return header + yaml.safe_dump({"webhooks": [webhook]}, sort_keys=False, width=200)


def _dns_label(text: str) -> str:
    label = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return label[:40] or "model"
