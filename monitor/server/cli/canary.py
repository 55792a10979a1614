"""``cvmon canary check`` (a gate for any CI/CD) and ``cvmon canary template`` (Argo, Flagger)."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from monitor.server.cli._common import check_models, load_settings, now, open_engine

#: Exit codes of ``check``: the verdict, or 3 when no verdict could be had.
EXIT = {"pass": 0, "fail": 1, "inconclusive": 2}
EXIT_ERROR = 3


class _Check(click.Command):
    """Usage errors exit 3, not click's 2 (which ``check`` uses for inconclusive)."""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any) -> click.Context:
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _UsageError(exc.format_message(), ctx=exc.ctx) from None


class _UsageError(click.UsageError):
    exit_code = EXIT_ERROR


class _Failed(click.ClickException):
    exit_code = EXIT_ERROR


@click.group("canary")
def canary() -> None:
    """Gate a model version's rollout on cvmon's comparison with its baseline (docs/canary.md).

    Decisions come from anytime-valid sequential tests: polling every minute for days keeps the
    rate of falsely failed canaries at the configured alpha (canary: in cvmon.yaml).
    """


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter("must be an RFC 3339 time, e.g. 2026-12-01T10:00:00Z", param_hint="--since") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _via_http(url: str, key: str | None, model: str, baseline: str, candidate: str, since: datetime | None) -> dict[str, Any]:
    import httpx

    params = {"baseline": baseline, "candidate": candidate}
    if since is not None:
        params["since"] = since.isoformat()
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        r = httpx.get(f"{url.rstrip('/')}/v1/models/{model}/compare", params=params, headers=headers, timeout=60)
    except httpx.HTTPError as exc:
        raise _Failed(f"cannot reach cvmon at {url}: {exc}") from None
    if r.status_code != 200:
        try:
            detail = r.json().get("detail")
        except ValueError:
            detail = r.text[:200]
        raise _Failed(f"cvmon answered {r.status_code}: {detail}")
    return r.json()  # type: ignore[no-any-return]


def _via_database(model: str, baseline: str, candidate: str, since: datetime | None) -> dict[str, Any]:
    from dataclasses import asdict

    from monitor.server.services import canary as service
    from monitor.server.store.engine import write_transaction

    settings = load_settings()
    engine = open_engine(settings)
    try:
        try:
            check_models(engine, [model], versions=[baseline, candidate])
        except click.ClickException as exc:
            raise _Failed(exc.message) from None
        moment = now()
        try:
            with engine.connect() as conn:
                result = service.compare(
                    conn, model, baseline, candidate, policy=settings.canary.policy(model), until=moment, since=since
                )
        except service.CompareError as exc:
            raise _Failed(str(exc)) from None
        with write_transaction(engine) as conn:
            service.record(conn, result, now=moment, automation=settings.automation)
    finally:
        engine.dispose()
    out = asdict(result)
    out["metrics"] = [asdict(m) for m in result.metrics]
    return out


def _fmt(value: float | None, ratio: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if not ratio else f"{value:+.1%}"


def _line(result: dict[str, Any]) -> str:
    parts = []
    for m in result["metrics"]:
        if not m["gating"]:
            continue
        ratio = m["metric"] == "latency_p95"
        evidence = f"{m['labels_baseline']}/{m['labels_candidate']} labels" if m["metric"].split(":")[0] in (
            "accuracy", "precision", "recall", "map") else f"{m['samples_baseline']}/{m['samples_candidate']}"  # fmt: skip
        parts.append(
            f"{m['metric']} {m['decision']} ({_fmt(m['difference'], ratio)} in [{_fmt(m['low'], ratio)}, {_fmt(m['high'], ratio)}], {evidence})"
        )
    return f"{result['verdict'].upper()}: " + "; ".join(parts)


@canary.command("check", cls=_Check)
@click.option("--model", required=True, help="The model.")
@click.option("--baseline", required=True, help="The version in production (e.g. v3).")
@click.option("--candidate", required=True, help="The version being rolled out (e.g. v4).")
@click.option("--since", help="Compare traffic from this time (RFC 3339). Default: the candidate's first prediction.")
@click.option("--wait/--no-wait", default=False, show_default=True, help="Poll until the verdict is pass or fail (or --timeout).")
@click.option("--interval", default=60.0, show_default=True, type=click.FloatRange(min=1), help="Seconds between polls with --wait.")
@click.option("--timeout", default=3600.0, show_default=True, type=click.FloatRange(min=0), help="Seconds --wait polls at most; then exit 2.")
@click.option("--url", envvar="CVMON_URL", help="cvmon's URL (env CVMON_URL). Without it the database of the settings is read directly.")
@click.option("--api-key", envvar="CVMON_API_KEY", help="A read key for --url (env CVMON_API_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Print the last comparison as JSON on standard output.")
def check(
    model: str, baseline: str, candidate: str, since: str | None, wait: bool, interval: float, timeout: float,
    url: str | None, api_key: str | None, as_json: bool,
) -> None:  # fmt: skip
    """Judge CANDIDATE against BASELINE once, or until decided with --wait.

    Exit status: 0 pass, 1 fail, 2 inconclusive, 3 when no verdict could be had (cvmon
    unreachable, unknown model or version, bad options). Progress goes to standard error, one
    line per poll: each gating metric's decision, the difference with its interval, the evidence.

    \b
    Examples:
      cvmon canary check --model shelf --baseline v3 --candidate v4
      CVMON_URL=https://cvmon.example CVMON_API_KEY=cvm_... \\
        cvmon canary check --model shelf --baseline v3 --candidate v4 --wait --interval 60 --timeout 7200
    """
    start = _parse_since(since)
    deadline = time.monotonic() + timeout
    polls = 0
    while True:
        polls += 1
        result = (
            _via_http(url, api_key, model, baseline, candidate, start) if url else _via_database(model, baseline, candidate, start)
        )
        click.echo(f"[{now():%H:%M:%S}] poll {polls}: {_line(result)}", err=True)
        if not wait or result["verdict"] != "inconclusive" or time.monotonic() + interval > deadline:
            break
        time.sleep(interval)
    if as_json:
        click.echo(json.dumps(result, default=str, indent=2))
    sys.exit(EXIT[result["verdict"]])


@canary.command("template")
@click.option("--format", "fmt", type=click.Choice(["argo", "flagger"]), required=True, help="Argo Rollouts AnalysisTemplate or Flagger webhook.")
@click.option("--model", required=True, help="The model the rollout deploys.")
@click.option("--url", required=True, envvar="CVMON_URL", help="cvmon's URL as the cluster reaches it (env CVMON_URL).")
@click.option("--baseline", help="Baseline version (argo: left out, the Rollout passes it as an argument).")
@click.option("--candidate", help="Candidate version (argo: left out, the Rollout passes it as an argument).")
@click.option("--secret", default="cvmon-api-key", show_default=True, help="argo: the Kubernetes Secret holding the API key.")
@click.option("--secret-key", default="key", show_default=True, help="argo: the key in that Secret.")
@click.option("--interval", default="1m", show_default=True, help="argo: time between measurements.")
@click.option("--count", default=60, show_default=True, type=click.IntRange(min=1), help="argo: measurements per analysis.")
@click.option(
    "--inconclusive", type=click.Choice(["proceed", "pause"]), default="proceed", show_default=True,
    help="What an inconclusive verdict does: proceed (only a fail stops the rollout) or pause (argo: pause unless some poll passed; flagger: count it as a failed check).",
)  # fmt: skip
@click.option("--api-key", envvar="CVMON_API_KEY", help="flagger: the read key put in the webhook's metadata (env CVMON_API_KEY).")
@click.option("--out", type=click.Path(dir_okay=False, writable=True, path_type=Path), help="Write here instead of standard output.")
def template(
    fmt: str, model: str, url: str, baseline: str | None, candidate: str | None, secret: str, secret_key: str,
    interval: str, count: int, inconclusive: str, api_key: str | None, out: Path | None,
) -> None:  # fmt: skip
    """Write a working Argo Rollouts AnalysisTemplate or Flagger webhook for MODEL's canary gate.

    \b
    Examples:
      cvmon canary template --format argo --model shelf --url https://cvmon.example > analysis.yaml
      cvmon canary template --format flagger --model shelf --url http://cvmon.cvmon:8000 \\
        --baseline v3 --candidate v4 --api-key "$CVMON_API_KEY"
    """
    from monitor.server.cli import _canary_templates as tpl

    if not url.startswith(("http://", "https://")):
        raise click.BadParameter("must be an http:// or https:// URL", param_hint="--url")
    if fmt == "argo":
        document = tpl.argo_analysis_template(
            url=url, model=model, baseline=baseline, candidate=candidate, secret=secret, secret_key=secret_key,
            interval=interval, count=count, inconclusive="pause" if inconclusive == "pause" else "proceed",
        )  # fmt: skip
        text = tpl.render_argo(document, secret=secret, secret_key=secret_key)
    else:
        missing = [name for name, value in (("--baseline", baseline), ("--candidate", candidate), ("--api-key", api_key)) if not value]
        if missing:
            raise click.UsageError(f"--format flagger needs {', '.join(missing)} (a Flagger webhook carries them in its metadata)")
        assert baseline and candidate and api_key
        hook = tpl.flagger_webhook(url=url, model=model, baseline=baseline, candidate=candidate, api_key=api_key,
                                   strict=inconclusive == "pause")  # fmt: skip
        text = tpl.render_flagger(hook)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        if fmt == "flagger":
            os.chmod(out, 0o600)  # it holds an API key
        click.echo(f"wrote {out}", err=True)


commands = [canary]
