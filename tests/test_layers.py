"""The import-linter contracts in pyproject.toml hold, and would catch each kind of import that
broke the layers before (a copy of the packages with one bad import added must fail them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"

# (module file, the import appended to it, the contract that must break)
BAD_IMPORTS = [
    pytest.param("monitor/server/store/writes.py", "import monitor.server.slo.events", "Server layers", id="store-imports-slo"),
    pytest.param("monitor/server/store/bulk.py", "import monitor.metrics", "The store is a repository", id="store-imports-metrics"),
    pytest.param("monitor/server/store/reads.py", "import monitor.server.services.states", "Server layers", id="store-imports-services"),
    pytest.param("monitor/server/api/query.py", "import monitor.server.jobs.evaluate", "Server layers", id="api-imports-jobs"),
    pytest.param("monitor/server/api/reference.py", "import monitor.server.store.tables", "reach tables", id="api-imports-tables"),
    pytest.param("monitor/server/reports/build.py", "import monitor.server.store.tables", "reach tables", id="reports-read-tables"),
    pytest.param("monitor/server/reports/build.py", "import monitor.server.jobs.evaluate", "Server layers", id="reports-import-jobs"),
    pytest.param("monitor/server/exporters/collectors.py", "import monitor.server.jobs", "Server layers", id="exporters-import-jobs"),
    pytest.param("monitor/server/jobs/runner.py", "import monitor.server.store.writes", "reach tables", id="jobs-import-writes"),
    pytest.param("monitor/sdk/_client.py", "import monitor.server.settings", "The pure packages", id="sdk-imports-server"),
    pytest.param("detectors/base.py", "import monitor.server.services", "The pure packages", id="detectors-import-server"),
]


def lint(tree: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("layers")
    for package in ("monitor", "detectors"):
        shutil.copytree(ROOT / package, tree / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree / "pyproject.toml")
    return tree


def test_the_contracts_hold(pristine: Path) -> None:
    result = lint(pristine)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize(("module", "line", "contract"), BAD_IMPORTS)
def test_a_forbidden_import_breaks_its_contract(pristine: Path, tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(pristine, tree)
    with (tree / module).open("a") as f:
        f.write(f"\n{line}  # noqa\n")
    result = lint(tree)
    assert result.returncode != 0, result.stdout
    broken = [text for text in result.stdout.split("\n\n") if "BROKEN" in text]
    assert any(contract in text.replace("\n", " ") for text in broken), result.stdout
