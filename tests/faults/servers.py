"""Real parts for the reliability tests: scratch databases, a private PostgreSQL server, and
``cvmon serve`` / ``cvmon worker`` subprocesses.

Every helper is a context manager or has an explicit ``stop``/``destroy`` so the tests can end
what they started in ``finally``. Subprocesses start in their own session and are ended by their
process group id (``cvmon serve --workers N`` forks uvicorn workers that must go with it).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from testkit.servers import free_port
from tests.conftest import IN_CI, _pg_admin_url, _pg_reachable, _sa_url

ROOT = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60.0, every: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def _require_postgres() -> str:
    admin = _pg_admin_url()
    problem = _pg_reachable(admin)
    if problem is not None:
        message = f"PostgreSQL at {admin} is unreachable ({problem})"
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return admin


@contextlib.contextmanager
def scratch_database(prefix: str = "cvmon_rel") -> Iterator[str]:
    """A freshly migrated database of its own on the shared PostgreSQL (its SQLAlchemy URL),
    dropped afterwards. For tests that register many models or count every row of a table."""
    import psycopg
    from sqlalchemy.engine import make_url

    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine

    admin = _require_postgres()
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = make_url(_sa_url(admin)).set(database=name).render_as_string(hide_password=False)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_key(url: str, scopes: list[str], models: list[str] | None = None) -> str:
    from monitor.server.services.keys import create_key as _create
    from monitor.server.store.engine import make_engine, write_transaction

    engine = make_engine(url)
    try:
        with write_transaction(engine) as conn:
            _, text = _create(conn, scopes=scopes, models=models, name="reliability", now=datetime.now(UTC))
    finally:
        engine.dispose()
    return text


# --------------------------------------------------------------------------------------------
# a private PostgreSQL server (never the shared one: other tests run against it)


def _pg_bin(name: str) -> str | None:
    explicit = os.environ.get("CVMON_PG_BIN")
    candidates = [Path(explicit) / name] if explicit else []
    candidates += sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True)
    found = shutil.which(name)
    if found:
        candidates.append(Path(found))
    return next((str(c) for c in candidates if c.exists()), None)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free loopback port (trust auth), ours to restart.

    ``initdb`` refuses to run as root, so as root the cluster is owned by the ``postgres`` OS user
    and its commands run through ``runuser``.
    """

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
        if not (self.initdb and self.pg_ctl):
            message = "PostgreSQL server binaries (initdb, pg_ctl) not found; install postgresql or set CVMON_PG_BIN"
            if IN_CI:
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="cvmon-private-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self._as: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self.running = False
        self.frozen = False

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self._as, *args], check=check, capture_output=True, text=True, timeout=120)

    def init(self) -> PrivatePostgres:
        assert self.initdb is not None
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
        conf = self.data / "postgresql.conf"
        extra = (
            f"\nlisten_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.root}'\n"
            "max_connections = 200\nshared_buffers = 64MB\nfsync = off\nsynchronous_commit = off\n"
            "full_page_writes = off\n"
        )
        self._run("sh", "-c", f"cat >> '{conf}' <<'EOF'{extra}EOF")
        return self

    def start(self) -> None:
        assert self.pg_ctl is not None
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        assert self.pg_ctl is not None
        self._run(self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def processes(self) -> list[int]:
        """The postmaster's pid, then its children's (backends and background workers)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                # the command may hold spaces: the parent pid is the 2nd field after its ')'
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def freeze(self) -> None:
        """SIGSTOP the whole server: it accepts TCP connections (the kernel does) but answers nothing."""
        for pid in self.processes():  # the postmaster first: no new backend forks in between
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        for pid in reversed(self.processes()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        self.frozen = False

    def destroy(self) -> None:
        """Stop (immediately) and delete the cluster; safe to call in ``finally``."""
        if self.frozen:
            self.thaw()
        if self.running and self.pg_ctl:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
            self.running = False
        shutil.rmtree(self.root, ignore_errors=True)

    def migrate(self) -> None:
        from monitor.server.store import migrate
        from monitor.server.store.engine import make_engine

        engine = make_engine(self.url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()


# --------------------------------------------------------------------------------------------
# cvmon processes


class Cvmon:
    """``python -m monitor.server.cli <args>`` in its own process group, output to a log file."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = {**os.environ, **env}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Cvmon:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.server.cli", *self.args],
                env=self.env, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        """SIGKILL the whole process group (a server's uvicorn workers die with it)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def serve(
    url: str, port: int, log: Path, *, workers: int = 1, scheduler: bool = False, log_level: str = "warning", **env: str
) -> Cvmon:
    """Start ``cvmon serve`` and wait until /readyz answers 200."""
    settings = {"CVMON_DATABASE_URL": url, "CVMON_SCHEDULER": "1" if scheduler else "0", **env}
    args = ["serve", "--port", str(port), "--workers", str(workers), "--log-level", log_level]
    proc = Cvmon(args, env=settings, log=log).start()
    try:
        wait_ready(f"http://127.0.0.1:{port}", proc)
    except BaseException:
        proc.stop()
        raise
    return proc


def worker(url: str, log: Path, *, log_level: str = "info", **env: str) -> Cvmon:
    return Cvmon(["worker", "--log-level", log_level], env={"CVMON_DATABASE_URL": url, **env}, log=log).start()


def wait_ready(base: str, proc: Cvmon | None = None, timeout: float = 60.0) -> None:
    def ready() -> bool:
        if proc is not None and not proc.alive():
            raise AssertionError(
                f"cvmon exited with {proc.proc.returncode if proc.proc else '?'}:\n{proc.output()[-3000:]}"
            )
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(ready, f"{base}/readyz", timeout=timeout, every=0.1)


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (Linux /proc), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0
