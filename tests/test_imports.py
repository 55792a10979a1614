"""What an inference process imports must stay light: no server dependency sneaks in."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

#: Top-level modules of the server extra (and of other extras) that the core must never import.
FORBIDDEN = frozenset(
    {
        "fastapi", "starlette", "uvicorn", "pydantic", "sqlalchemy", "alembic", "psycopg", "apscheduler",
        "prometheus_client", "jinja2", "scipy", "sklearn", "evidently", "pandas", "orjson", "click", "yaml",
        "numba", "llvmlite", "torch", "onnxruntime", "tritonclient", "monitor.server",
        "nats", "paho",
    }
)  # fmt: skip


def imported_by(*modules: str) -> set[str]:
    code = (
        "import json, sys\n"
        + "".join(f"import {m}\n" for m in modules)
        + "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


@pytest.mark.parametrize(
    "modules",
    [
        pytest.param(("monitor", "monitor.wire", "monitor.errors"), id="wire"),
        pytest.param(("monitor.metrics",), id="metrics"),
        pytest.param(("monitor.sdk",), id="sdk"),
    ],
)
def test_core_modules_import_no_server_dependency(modules):
    loaded = imported_by(*modules)
    leaked = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN or m.startswith("monitor.server"))
    assert not leaked, f"importing {modules} pulled in {leaked}"


def test_cli_help_is_fast_to_import():
    """`cvmon --help` must not import the heavy server stack."""
    loaded = imported_by("monitor.server.cli._root")
    heavy = sorted(m for m in loaded if m.split(".")[0] in {"sqlalchemy", "fastapi", "scipy", "sklearn", "evidently", "torch", "numba"})
    assert not heavy, heavy
