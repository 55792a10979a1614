"""The metric kernels compiled in the background, so a new user's first command does not wait.

numba compiles each kernel of :mod:`monitor.metrics` on its first call and keeps the machine code
in its disk cache; with an empty cache the first ``cvmon eval coco`` spends seconds compiling.
``cvmon db upgrade`` and ``cvmon demo`` (so ``make run`` and ``make serve``) therefore start
``python -m monitor.server.cli._warm``, detached: the command returns at once, the process
compiles every kernel into the cache (:func:`monitor.metrics.warm_kernels`), and the next
command loads them instead.

It never runs twice at once (an exclusive lock on a file beside the cache; a second one exits)
and not again once done: a stamp records the numba and Python versions and a hash of the
kernels' source files, so it runs again only after an upgrade or a cleared cache. Both files and
the log of its runs (``cvmon-kernels.log``) live where numba keeps the cache: ``NUMBA_CACHE_DIR``
when set, else ``monitor/metrics/__pycache__``; where that is not writable, ``~/.cache/cvmon``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

METRICS = Path(__file__).resolve().parents[2] / "metrics"
LOCK, STAMP, LOG = "cvmon-kernels.lock", "cvmon-kernels.stamp", "cvmon-kernels.log"


def cache_dir() -> Path:
    """Where numba caches the kernels (its documented order), and where the lock, stamp and log go."""
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    beside = METRICS / "__pycache__"
    if os.access(beside if beside.exists() else METRICS, os.W_OK):
        return beside
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cvmon"


def stamp() -> str | None:
    """What a finished warm-up holds for: numba's and Python's versions and the kernels' sources
    (None without numba: nothing to compile)."""
    try:
        numba = metadata.version("numba")
    except metadata.PackageNotFoundError:
        return None
    digest = hashlib.sha256()
    for path in sorted(METRICS.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return f"numba {numba} python {sys.version.split()[0]} sources {digest.hexdigest()[:16]}\n"


def is_current(where: Path) -> bool:
    wanted = stamp()
    try:
        return wanted is None or (where / STAMP).read_text(encoding="utf-8") == wanted
    except OSError:
        return False


def start_in_background() -> int | None:
    """Start the warm-up as a detached process unless the cache is current (or numba missing);
    returns its pid. Never waits for it and never fails the caller."""
    where = cache_dir()
    if is_current(where):
        return None
    try:
        where.mkdir(parents=True, exist_ok=True)
        with open(where / LOG, "a", encoding="utf-8") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "monitor.server.cli._warm"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, close_fds=True,
            )  # fmt: skip
    except OSError:
        return None  # a read-only home, no fork: the first command compiles, as it would anyway
    # reaped by a daemon thread: no zombie beside a long-running command (the demo), and a command
    # that exits first leaves the process running on its own (its own session)
    threading.Thread(target=proc.wait, name="cvmon-kernels-reaper", daemon=True).start()
    return proc.pid


def main() -> int:
    """The detached process: take the lock or leave, compile, write the stamp."""
    import fcntl

    where = cache_dir()
    where.mkdir(parents=True, exist_ok=True)
    with open(where / LOCK, "a", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say("another warm-up is running; leaving it to finish")
            return 0
        if is_current(where):
            return 0
        _say(f"compiling the metric kernels into {where}")
        started = time.perf_counter()
        from monitor.metrics import warm_kernels

        warm_kernels()
        text = stamp()
        if text is not None:
            partial = where / f"{STAMP}.{os.getpid()}"
            partial.write_text(text, encoding="utf-8")
            partial.replace(where / STAMP)
        _say(f"kernels ready in {time.perf_counter() - started:.1f} s")
    return 0


def _say(message: str) -> None:
    print(f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S} pid {os.getpid()}: {message}", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
