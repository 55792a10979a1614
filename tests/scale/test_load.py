"""The short version of bench/load.py in CI: 30 s of mixed load, and nothing may go wrong.

bench/load.py starts `cvmon serve --workers 2` with its scheduler, a `cvmon worker`, SDK client
processes (classification and detection with embeddings, late ground truth) and a scraper, on a
scratch PostgreSQL database. Here: no error of any kind, every record stored once, the jobs kept
running, and memory bounded. No throughput is asserted (CI machines differ); the figures are in
the JSON and the test's output.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import _pg_admin_url
from tests.faults.servers import ROOT, _require_postgres

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

#: Generous: a leak of a few MB per minute would not fail a 30-s run, a runaway one would.
MAX_GROWTH_MB = 250
MAX_PEAK_MB = 2048


@pytest.mark.timeout(400)
def test_thirty_seconds_of_mixed_load_without_an_error_or_a_lost_record(tmp_path):
    # three evaluate runs and the late labels of the first twenty seconds fall inside it
    _require_postgres()
    out = tmp_path / "load.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "load.py"), "--duration", "30", "--clients", "2", "--rate", "100",
         "--label-delay", "10", "--evaluate-interval", "10", "--database-url", _pg_admin_url(), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=380,
    )  # fmt: skip
    print(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    errors = report["errors"]
    assert errors == {
        "server_5xx": 0, "client_5xx": 0, "sdk_dropped": 0, "sdk_rejected": 0, "clients_not_flushed": 0,
        "scrapes_not_200": 0, "job_failures": 0, "tracebacks": {}, "lost": 0, "double_counted": 0, "labels_lost": 0,
    }, f"{errors}; logs in {report['logs']}"  # fmt: skip
    assert report["predictions_stored"] == report["predictions_logged"] > 0
    assert report["labels_stored"] == report["labels_logged"] > 0
    assert report["scrapes"] >= 2  # the scraper kept going (every 15 s)
    assert report["jobs"]["evaluate"]["runs"] > 0 and report["metric_latest_rows"] > 0
    for name, m in report["memory"].items():
        assert m["growth_mb"] < MAX_GROWTH_MB, f"{name} grew {m['growth_mb']:.0f} MB: {m['samples']}"
        assert m["peak_mb"] < MAX_PEAK_MB, f"{name} peaked at {m['peak_mb']:.0f} MB"
