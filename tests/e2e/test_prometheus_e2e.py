"""Real Prometheus (Debian's package) against a running cvmon, on loopback.

cvmon serves /metrics behind an API key; Prometheus scrapes it every second with
``authorization: {credentials: <key>}`` and loads the rules ``cvmon slo render`` writes for the
example SLOs (re-targeted at this test's model). The test proves the target is up, every rule of
every group evaluates with ``health == "ok"`` and no error, and the recording rules find the SLO
counters cvmon exports (so names, labels and types line up end to end).

Under CI=true a missing ``prometheus`` binary fails the test; elsewhere it skips with the fix.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitor.server.slo.render import recorded_name, write_rules
from monitor.server.slo.spec import load_slos
from testkit.servers import free_port
from tests.conftest import IN_CI

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

REPO = Path(__file__).resolve().parents[2]
INSTALL = "apt-get install -y prometheus"


def find_prometheus() -> str:
    found = os.environ.get("PROMETHEUS") or shutil.which("prometheus")
    if found and Path(found).exists():
        return found
    message = f"prometheus is not installed ({INSTALL})"
    if IN_CI:
        pytest.fail(message + ": under CI=true this test must run", pytrace=False)
    pytest.skip(message)


def wait_for(what: str, check: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float = 45) -> Any:
    """Poll ``check()`` until it returns something truthy (a real process: no clock to inject)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"prometheus exited ({proc.returncode}) waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            last = check()
            if last:
                return last
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}; last: {last!r}\n{log.read_text()[-3000:]}")


def test_prometheus_scrapes_cvmon_and_evaluates_the_rules(make_api, model_name, tmp_path):
    binary = find_prometheus()
    example = load_slos((REPO / "examples" / "cvmon.yaml").read_text("utf-8"))
    slos = tuple(dataclasses.replace(s, model=model_name) for s in example if s.model == "digits")
    rules = write_rules(slos, tmp_path / "rules").written
    api = make_api(slos=slos, cohort_keys=("camera",))
    key = api.create_key(["read"], models=[model_name])
    with api.admin() as c:
        c.put(
            f"/v1/models/{model_name}",
            json={"task": "classification", "classes": [str(d) for d in range(10)]},
        )
        preds = [
            {"prediction_id": f"p{i}", "model": model_name, "model_version": "v1", "predicted_class": str(i % 10),
             "latency_ms": 20.0 + i, "cohort": {"camera": "cam-3" if i % 2 else "cam-1"}}
            for i in range(40)
        ]  # fmt: skip
        assert c.post("/v1/predictions", json={"records": preds}).json()["accepted"] == 40
        labels = [{"prediction_id": f"p{i}", "model": model_name, "label": str((i * 7) % 10)} for i in range(40)]
        assert c.post("/v1/ground-truth", json={"records": labels}).json()["accepted"] == 40

    port = free_port()
    target = api.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(f"""\
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - {tmp_path / "rules"}/*.rules.yml
scrape_configs:
  - job_name: cvmon
    authorization:
      credentials: {key}
    static_configs:
      - targets: ["{target}"]
""")
    log = tmp_path / "prometheus.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    prom = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
    try:

        def target_up() -> dict[str, Any] | None:
            targets = prom.get("/api/v1/targets").json()["data"]["activeTargets"]
            return targets[0] if len(targets) == 1 and targets[0]["health"] == "up" else None

        wait_for("prometheus to be ready", lambda: prom.get("/-/ready").status_code == 200, proc, log)
        up = wait_for("the cvmon target to be up", target_up, proc, log)
        assert up["lastError"] == "" and up["scrapeUrl"] == f"{api.url}/metrics"

        def groups_evaluated() -> list[dict[str, Any]] | None:
            groups = prom.get("/api/v1/rules").json()["data"]["groups"]
            done = len(groups) == len(rules) and all(r["health"] != "unknown" for g in groups for r in g["rules"])
            return groups if done else None

        groups = wait_for("every rule to be evaluated", groups_evaluated, proc, log)
        assert {g["name"] for g in groups} == {f"cvmon-slo-{s.name}" for s in slos}
        broken = [(g["name"], r["name"], r["health"], r.get("lastError")) for g in groups for r in g["rules"]
                  if r["health"] != "ok" or r.get("lastError")]  # fmt: skip
        assert not broken
        assert sum(len(g["rules"]) for g in groups) > 8 * 10  # recording rules and alerts of 8 SLOs

        # the recording rules see cvmon's counters: increase() over two scrapes of unchanged counters
        events_5m = recorded_name("cvmon_slo_events_total", 300)

        def recorded() -> list[dict[str, Any]] | None:
            query = f'{events_5m}{{slo="digits-latency",model="{model_name}"}}'
            result = prom.get("/api/v1/query", params={"query": query}).json()["data"]["result"]
            return result or None

        (sample,) = wait_for("a recording rule over the exported counters", recorded, proc, log)
        assert float(sample["value"][1]) == 0.0  # nothing new since the counters appeared
        scraped = prom.get("/api/v1/query", params={"query": f'cvmon_slo_events_total{{model="{model_name}"}}'})
        by_slo = {r["metric"]["slo"]: float(r["value"][1]) for r in scraped.json()["data"]["result"]}
        assert by_slo["digits-latency"] == 40 and by_slo["digits-accuracy"] == 40
        assert by_slo["digits-accuracy-cam-3"] == 20 and by_slo["digits-recall-7"] == 4
    finally:
        prom.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
