"""Run Prometheus' ``promtool`` on rule files (the real parser and rule evaluator).

promtool ships with Prometheus; Debian and Ubuntu package it as ``prometheus``. cvmon never needs
it at run time: ``cvmon slo render --check`` and the test suite use it to prove the rendered rules
parse and behave.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Final

INSTALL_HINT: Final = "sudo apt-get install -y prometheus  (Debian/Ubuntu; it provides promtool)"


class PromtoolMissing(RuntimeError):
    """promtool is not installed; the message says how to install it."""


def find_promtool() -> str:
    """The path of promtool: ``$PROMTOOL`` when set, else the one on PATH."""
    explicit = os.environ.get("PROMTOOL")
    found = explicit or shutil.which("promtool")
    if not found or not Path(found).exists():
        raise PromtoolMissing(f"promtool is not installed: {INSTALL_HINT}")
    return found


def run_promtool(
    args: Sequence[str], *, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``promtool *args`` and return the finished process (the caller reads ``returncode``)."""
    return subprocess.run(
        [find_promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def check_rules(paths: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """``promtool check rules``: parses every file, every expression, and lints duplicates."""
    return run_promtool(["check", "rules", *map(str, paths)])


def run_rule_tests(paths: Sequence[Path]) -> subprocess.CompletedProcess[str]:
    """``promtool test rules``: evaluates rules over the test files' input series."""
    return run_promtool(["test", "rules", *map(str, paths)])
