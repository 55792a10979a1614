"""docs/streaming.md: its example alerts parse with promtool and read only exported names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from monitor.server.exporters.promql import referenced_series
from monitor.server.names import EXPORTED_SERIES
from tests.slo.golden import require_promtool

DOC = Path(__file__).resolve().parents[2] / "docs" / "streaming.md"


def _alert_block() -> list[dict]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text("utf-8"), flags=re.S)
    [rules] = [yaml.safe_load(b) for b in blocks if "alert:" in b]
    return rules


def test_the_example_alerts_are_valid_rules_on_exported_names(tmp_path: Path) -> None:
    rules = _alert_block()
    assert {r["alert"] for r in rules} == {"CvmonConsumerPaused", "CvmonConsumerFallingBehind", "CvmonDeadLetters"}
    for rule in rules:
        assert referenced_series(rule["expr"]) <= EXPORTED_SERIES, rule["expr"]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "cvmon-consume", "rules": rules}]}))
    proc = subprocess.run([require_promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
