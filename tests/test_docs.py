"""What README.md and docs/*.md show a new user works: the shell commands and HTTP requests of every
```sh block run against a running demo (``cvmon demo``, what ``make run`` starts), and every
file they point to exists.

Each block runs as one bash script (``set -euo pipefail``: a block's commands may share
variables), with ``localhost:8000`` pointed at the demo's port, ``$KEY`` the key the demo
printed and ``.venv/bin/`` this interpreter's. ``curl`` runs as written, every argument passed on
unchanged; a shell function around it fails the block on an HTTP status outside 2xx. A command
that cannot run inside the test suite is listed in :data:`NOT_RUN` with the reason, and only its
script's existence is checked.
"""

from __future__ import annotations

import fnmatch
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
EXAMPLES = sorted((REPO / "examples").glob("*"))

#: Commands shown but not run here (matched at the start of a command), and why.
NOT_RUN = {
    "make run": "it is what this test starts (`cvmon demo`), after pip installs .venv",
    "make test": "the suite this test belongs to",
    "make test-fast": "a part of the suite this test belongs to",
    "make test-label-studio": "installs and starts Label Studio: minutes, outside the suite's time",
    "make lint": "make installs the dev dependencies into .venv with pip first; CI runs it beside the tests",
    "make bench": "every benchmark: tens of minutes on a quiet machine",
    ".venv/bin/pytest": "a part of the suite this test belongs to",
    ".venv/bin/python bench/torch_gpu.py": "needs a CUDA GPU",
    ".venv/bin/python bench/metrics.py": "a benchmark: about 4 minutes and 14 GB of memory",
    ".venv/bin/python bench/ingest.py": "a benchmark: minutes of load on PostgreSQL with 3 server processes",
    ".venv/bin/python bench/pipeline.py": "a benchmark: minutes on PostgreSQL, timings meant for a quiet machine",
    ".venv/bin/python bench/canary.py": "a benchmark: 200 seeded rollouts, a minute or more of CPU",
    ".venv/bin/python bench/stream.py": "a benchmark: private brokers and minutes of load through each",
    ".venv/bin/python bench/console.py": "a benchmark: a week of a million predictions loaded and evaluated first",
    "pip install": "installs packages: the suite runs in the environment it was installed in",
    "cvmon consume": "a long-running consumer of a broker the reader runs (tests/consumers run it against real brokers)",
}
#: Words that start a command a reader would copy into a shell.
COMMAND = re.compile(r"(cvmon|curl|make|\.venv/bin/\S+|python\S*) ")
#: Repository paths named in the docs: they must exist (``<slo>`` and ``*`` match any name).
PATH = re.compile(r"(?<![\w./-])((?:alerts|grafana|docs|examples|monitor|bench|tests|migrations|testkit|detectors)/[\w.<>*/-]*\w)")


@dataclass(frozen=True)
class Block:
    """A fenced ```sh block: where it is and its text."""

    doc: Path
    line: int
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc.relative_to(REPO)}:{self.line}"


def fenced(doc: Path) -> Iterator[tuple[str, int, list[str]]]:
    """(info string, line of the fence, lines) of every fenced code block of ``doc``."""
    info, start, lines = None, 0, []
    for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
        if line.startswith("```"):
            if info is None:
                info, start, lines = line[3:].strip(), number, []
            else:
                yield info, start, lines
                info = None
        elif info is not None:
            lines.append(line)


def sh_blocks() -> list[Block]:
    return [Block(doc, n, "\n".join(lines)) for doc in DOCS for info, n, lines in fenced(doc) if info == "sh"]


def commands(text: str) -> list[str]:
    """The commands of a script, comments left out: lines joined where a backslash or an open
    quote continues them."""
    out, current, quote, comment = [], "", "", False
    for i, ch in enumerate(text):
        escaped = text[:i].endswith("\\")
        if ch == "\n" and not quote and not escaped:
            out.append(current)
            current, comment = "", False
            continue
        if comment:
            continue
        if ch == "#" and not quote and (not current or current[-1].isspace()):
            comment = True
            continue
        if ch in "'\"" and (not quote or quote == ch) and not escaped:
            quote = "" if quote else ch
        current += ch
    out.append(current)
    return [c.strip() for c in out if c.strip()]


def not_run(command: str) -> str | None:
    return next((why for prefix, why in NOT_RUN.items() if command == prefix or command.startswith(prefix + " ")), None)


# --------------------------------------------------------------------------------------------
# without a server


def test_the_docs_show_commands_in_sh_blocks_that_this_test_runs():
    blocks = sh_blocks()
    assert {b.doc.name for b in blocks} >= {"README.md", "slo.md", "drift.md"}
    elsewhere = [
        f"{doc.relative_to(REPO)}:{n}: {line}"
        for doc in DOCS
        for info, n, lines in fenced(doc)
        if info != "sh"
        for line in lines
        if COMMAND.match(line)
    ]
    indented = [
        f"{doc.relative_to(REPO)}: {line.strip()}"
        for doc in DOCS
        for line in _outside_fences(doc)
        if line.startswith("    ") and COMMAND.match(line.strip())
    ]
    assert not elsewhere and not indented, f"put these in a ```sh block, which this test runs: {elsewhere + indented}"


def test_every_command_not_run_says_why_and_its_script_exists():
    shown = [c for b in sh_blocks() for c in commands(b.text)]
    unused = [prefix for prefix in NOT_RUN if not any(c == prefix or c.startswith(prefix + " ") for c in shown)]
    assert not unused, f"NOT_RUN lists commands the docs no longer show: {unused}"
    for command in shown:
        script = re.match(r"\.venv/bin/python (\S+\.py)", command)
        if script and not_run(command):
            assert (REPO / script.group(1)).is_file(), command


def test_every_file_the_docs_and_examples_name_exists():
    """Among the files git tracks (a clean clone has nothing else), where git is at hand."""
    tracked = _tracked()
    missing = []
    for doc in [*DOCS, *EXAMPLES]:
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            for found in PATH.findall(line):
                pattern = re.sub(r"<[^>]*>", "*", found.rstrip("/"))
                if tracked is None:
                    exists = bool(list(REPO.glob(pattern)))
                else:
                    exists = any(fnmatch.fnmatchcase(p, pattern) or p.startswith(pattern + "/") for p in tracked)
                if not exists:
                    missing.append(f"{doc.relative_to(REPO)}:{number}: {found}")
    assert not missing, missing


def _tracked() -> list[str] | None:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.decode().split("\0")


def _outside_fences(doc: Path) -> Iterator[str]:
    inside = False
    for line in doc.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            inside = not inside
        elif not inside:
            yield line


# --------------------------------------------------------------------------------------------
# against the demo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Demo:
    port: int
    key: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    """``cvmon demo`` on a fresh embedded database with the SLOs of examples/cvmon.yaml, streaming
    for 20 s instead of 120, then serving until the tests are done."""
    work = tmp_path_factory.mktemp("docs-demo")
    port = _free_port()
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "CVMON_DATABASE_URL": f"sqlite:///{work / 'cvmon.db'}",
        "CVMON_CONFIG": str(REPO / "examples" / "cvmon.yaml"),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor.server.cli", "demo", "--port", str(port), "--duration", "20"],
        cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()

    def drain() -> None:  # read every line, so the demo never blocks on a full pipe
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    output, key = [], None
    deadline = time.monotonic() + 600
    try:
        while "serving until Ctrl-C" not in (output[-1] if output else ""):
            try:
                output.append(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail("the demo did not start serving in 10 minutes:\n" + "".join(output))
            found = re.search(r"API key \(ingest, read, admin; shown once\): (\S+)", output[-1])
            key = found.group(1) if found else key
            if proc.poll() is not None and lines.empty():
                break
        assert key and proc.poll() is None, "".join(output)
        yield Demo(port, key, {**env, "KEY": key})
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(10)
        proc.stdout.close()  # type: ignore[union-attr]


#: Fails the script on an HTTP status outside 2xx; the request itself is curl's, as written.
CURL = """
curl() {
  local status
  status=$(command curl --silent --show-error --output "$EXAMPLE_BODY" --write-out '%{http_code}' "$@") || return $?
  cat "$EXAMPLE_BODY"; echo
  case "$status" in 2??) ;; *) echo "curl answered HTTP $status" >&2; return 22 ;; esac
}
trap 'echo "failed: $BASH_COMMAND" >&2' ERR
"""


@pytest.mark.slow  # the demo streams for 20 s and evaluates before the first block runs
@pytest.mark.parametrize("block", sh_blocks(), ids=lambda b: b.id)
def test_the_commands_of_the_docs_succeed_against_the_demo(demo, block, tmp_path):
    script = []
    for command in commands(block.text):
        why = not_run(command)
        script.append(f"# not run: {why}" if why else command)
    text = "\n".join(script)
    text = text.replace("localhost:8000", f"127.0.0.1:{demo.port}").replace("127.0.0.1:8000", f"127.0.0.1:{demo.port}")
    text = text.replace(".venv/bin/", str(Path(sys.executable).parent) + "/")
    env = {**demo.env, "EXAMPLE_BODY": str(tmp_path / "body")}
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + CURL + text], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"{block.id} failed (exit {proc.returncode}):\n{text}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
