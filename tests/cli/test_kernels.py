"""Compile what a command uses, and compile it before a new user waits for it.

Each test has its own empty numba cache (``NUMBA_CACHE_DIR``) and reads numba's cache log
(``NUMBA_DEBUG_CACHE=1``: a "data saved" line per kernel compiled, "data loaded" per kernel
loaded from the cache) of real ``cvmon`` processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from monitor.server.cli._warm import LOG, STAMP
from testkit.synth import CocoOptions, classification_like, coco_like

pytestmark = pytest.mark.slow  # every kernel compiled from nothing, in several processes (~1 min)

REPO = Path(__file__).resolve().parents[2]
COCO_KERNELS = {"_match_groups", "_merge_sorted_runs", "_accumulate_classes", "_operating_point"}


@pytest.fixture
def files(tmp_path):
    """A COCO pair of three chunks of images (what cvmon eval merges), and float32 / float64
    classification files."""
    gt, dt = coco_like(5, CocoOptions(n_images=1200, n_classes=5, mean_gt=2.0, max_dets=5))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    for dtype in (np.float32, np.float64):
        labels, probs = classification_like(3, 500, 7, dtype=dtype)
        np.savez(tmp_path / f"{np.dtype(dtype).name}.npz", labels=labels, probabilities=probs)
    return tmp_path


def env(cache: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "NUMBA_CACHE_DIR": str(cache),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        **extra,
    }


def cvmon(cache: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "monitor.server.cli", *args], env=env(cache, NUMBA_DEBUG_CACHE="1", **extra),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def compiled(proc: subprocess.CompletedProcess[str]) -> set[str]:
    """The kernels a process compiled (numba saved them to its cache)."""
    return set(re.findall(r"data saved to '.*?(_\w+)-\d+\.py\d+\.\d+\.nbc'", proc.stdout + proc.stderr))


def loaded(proc: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"data loaded from '.*?(_\w+)-\d+\.py\d+\.\d+\.nbc'", proc.stdout + proc.stderr))


#: The evaluate job's probability scan: read-only float32 rows as the server stores them.
STORED_ROWS = """
import numpy as np
from monitor.metrics import probability_states
from monitor.server.services.decode import probability_matrix
rows = [np.float32([0.7, 0.2, 0.1]).tobytes(), np.float32([0.1, 0.8, 0.1]).tobytes()]
probability_states(np.array([0, 1]), probability_matrix(rows, 3), classwise=True, samples=True)
"""


def test_each_command_compiles_only_its_kernels_and_after_the_warm_up_none(files, tmp_path):
    cache = tmp_path / "numba-cache"
    coco = ["eval", "coco", "--gt", str(files / "gt.json"), "--dt", str(files / "dt.json")]
    assert compiled(cvmon(cache, *coco)) == COCO_KERNELS
    assert compiled(cvmon(cache, "eval", "classification", "--npz", str(files / "float32.npz"))) == {"_scan_rows"}

    warm = tmp_path / "warmed-cache"
    proc = subprocess.run([sys.executable, "-m", "monitor.server.cli._warm"], env=env(warm), capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0 and "kernels ready" in proc.stdout, proc.stdout + proc.stderr
    runs = [
        cvmon(warm, *coco),
        cvmon(warm, "eval", "classification", "--npz", str(files / "float32.npz")),
        cvmon(warm, "eval", "classification", "--npz", str(files / "float64.npz")),
    ]
    job = subprocess.run([sys.executable, "-c", STORED_ROWS], env=env(warm, NUMBA_DEBUG_CACHE="1"),
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert job.returncode == 0, job.stderr
    for run in [*runs, job]:
        assert compiled(run) == set(), run.args
    assert loaded(runs[0]) == COCO_KERNELS and loaded(job) == {"_scan_rows"}


def test_db_upgrade_starts_one_detached_warm_up_and_does_not_wait_for_it(tmp_path):
    cache = tmp_path / "numba-cache"
    db = {"CVMON_DATABASE_URL": f"sqlite:///{tmp_path / 'cvmon.db'}"}
    first = cvmon(cache, "db", "upgrade", **db)
    pid = int(re.search(r"compiling the metric kernels in the background \(pid (\d+)", first.stderr).group(1))
    assert not (cache / STAMP).exists()  # the command has returned; compiling takes the child seconds
    second = cvmon(cache, "db", "upgrade", **db)
    assert "compiling the metric kernels in the background" in second.stderr  # not done yet: one more tries
    deadline = time.monotonic() + 600
    while not (cache / STAMP).exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    log = (cache / LOG).read_text()
    assert log.count("kernels ready") == 1 and log.count("another warm-up is running") == 1, log
    assert f"pid {pid}: compiling" in log, log
    assert "background" not in cvmon(cache, "db", "upgrade", **db).stderr  # done: nothing to start
