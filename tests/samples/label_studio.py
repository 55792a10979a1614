"""A real Label Studio for tests: the PyPI package in its own virtualenv under a cache directory,
started on a free port with a data directory copied from a template migrated once.

``$CVMON_TEST_CACHE`` (default ``~/.cache/cvmon-tests``) keeps the virtualenv and the template
between runs: the first run installs (about 5 minutes here) and migrates (about 4), later ones
start in under half a minute. Telemetry, Sentry and the version check are off (no internet at run
time); SSRF protection is off so that its webhooks may reach cvmon on loopback.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from testkit.servers import free_port

VERSION = "1.23.2"
#: Sentry 3 removed an option Label Studio 1.23 passes when Sentry is configured.
PINS = (f"label-studio=={VERSION}", "sentry-sdk<3")
TOKEN = "0123456789abcdef0123456789abcdef01234567"
USER = "labeller@example.com"


def cache_dir() -> Path:
    return Path(os.environ.get("CVMON_TEST_CACHE") or Path.home() / ".cache" / "cvmon-tests") / f"label-studio-{VERSION}"


def _env(data: Path) -> dict[str, str]:
    return {
        **os.environ, "LABEL_STUDIO_BASE_DATA_DIR": str(data), "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "",
        "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false", "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "SSRF_PROTECTION_ENABLED": "false", "WEBHOOK_TIMEOUT": "10", "DJANGO_DB": "sqlite",
    }  # fmt: skip


def install() -> Path:
    """The virtualenv's ``label-studio`` command, installing it first when missing."""
    venv = cache_dir() / "venv"
    command = venv / "bin" / "label-studio"
    if command.exists():
        return command
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *PINS], check=True, timeout=1200)
    return command


@dataclass
class LabelStudio:
    url: str
    process: subprocess.Popen[bytes]

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Token {TOKEN}"}, timeout=60)


def _start(command: Path, data: Path, log: Path) -> LabelStudio:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [str(command), "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port), "--username", USER,
             "--password", "not-a-secret-1", "--user-token", TOKEN],
            env=_env(data), stdout=out, stderr=out,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 900  # the first start migrates a fresh database
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                return LabelStudio(url, process)
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"Label Studio did not start: {log.read_text(errors='replace')[-3000:]}") from None
            time.sleep(1)


@contextmanager
def running(workdir: Path) -> Iterator[LabelStudio]:
    """Label Studio with a fresh copy of the migrated template (made on first use)."""
    command = install()
    template = cache_dir() / "data-template"
    if not (template / "label_studio.sqlite3").exists():
        shutil.rmtree(template, ignore_errors=True)
        template.mkdir(parents=True)
        first = _start(command, template, workdir / "label-studio-template.log")
        first.process.terminate()
        first.process.wait(60)
    data = workdir / "label-studio-data"
    shutil.copytree(template, data)
    studio = _start(command, data, workdir / "label-studio.log")
    try:
        yield studio
    finally:
        studio.process.terminate()
        try:
            studio.process.wait(30)
        except subprocess.TimeoutExpired:
            studio.process.kill()


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    """Poll ``check()`` until it returns something truthy (webhooks are delivered after the API answers)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)
