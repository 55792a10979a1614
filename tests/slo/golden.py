"""Generated files checked into the repository (alerts/, grafana/) and the check that they are current.

A test renders the files again and compares them with the committed ones, so they never go stale.
``CVMON_REGENERATE=1 pytest tests/slo tests/grafana`` rewrites them instead (then review the diff).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from monitor.server.slo.promtool import PromtoolMissing, find_promtool

REPO = Path(__file__).resolve().parents[2]
REGENERATE = os.environ.get("CVMON_REGENERATE") == "1"


def assert_current(root: Path, files: Mapping[str, str], *, pattern: str | None = None) -> None:
    """Every file of ``files`` (relative path -> text) exists under ``root`` with that text and,
    with ``pattern``, no other file matching it does. Rewrites them under CVMON_REGENERATE=1."""
    if REGENERATE:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        if pattern is not None:
            for path in root.glob(pattern):
                if str(path.relative_to(root)) not in files:
                    path.unlink()
        return
    stale = [
        rel
        for rel, text in files.items()
        if not (root / rel).is_file() or (root / rel).read_text("utf-8") != text
    ]
    extra = (
        []
        if pattern is None
        else sorted(
            str(p.relative_to(root)) for p in root.glob(pattern) if str(p.relative_to(root)) not in files
        )
    )
    assert not stale and not extra, (
        f"generated files under {root} are out of date: changed {stale}, left over {extra}. "
        "Run CVMON_REGENERATE=1 .venv/bin/pytest tests/slo tests/grafana and commit the result."
    )


def require_promtool() -> str:
    """promtool's path, or a test failure saying how to install it (never a skip: CI must run it)."""
    try:
        return find_promtool()
    except PromtoolMissing as exc:
        pytest.fail(str(exc), pytrace=False)
