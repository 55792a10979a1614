"""`cvmon demo` end to end, as the README runs it: a short run on a fresh embedded database, then
the drift episode is read back from the metrics API that the evaluation pipeline fills."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from testkit.servers import ThreadServer, free_port

pytestmark = pytest.mark.slow  # a 15-second demo run plus training and evaluation

ROOT = Path(__file__).resolve().parents[2]
#: Enough simulated hours that whole hours fall before the drift and after it.
HOURS = 8


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("demo")
    env = {**os.environ, "CVMON_DATABASE_URL": f"sqlite:///{work / 'cvmon.db'}", "XDG_CACHE_HOME": str(work / "cache"),
           "CVMON_SCHEDULER": "0", "PYTHONPATH": str(ROOT)}  # fmt: skip
    port = free_port()
    started = datetime.now(UTC)
    done = subprocess.run(
        [sys.executable, "-m", "monitor.server.cli", "demo", "--port", str(port), "--duration", "15", "--rate", "300",
         "--simulated-hours", str(HOURS), "--no-keep-serving"],
        check=False, cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return work, started, done.stdout


@pytest.fixture(scope="module")
def accuracy(demo_run):
    """``{hour: {camera: accuracy}}`` from GET /v1/models/digits/metrics on the demo's database."""
    from monitor.server.app import create_app
    from monitor.server.demo.run import hourly_accuracy
    from monitor.server.settings import Settings

    work, _, stdout = demo_run
    key = next(line.rsplit(" ", 1)[1] for line in stdout.splitlines() if line.startswith("API key"))
    settings = Settings(database_url=f"sqlite:///{work / 'cvmon.db'}", scheduler=False)
    with ThreadServer(create_app(settings)) as server:
        return hourly_accuracy(server.url, key)


def test_the_demo_explains_where_to_look_before_it_streams_and_ends_with_the_console(demo_run):
    from monitor.server.services.weeks import Week

    _, started, stdout = demo_run
    for text in ("/docs", "/v1/models/digits/metrics?window=1h&cohort=camera:cam-3", "/metrics", "evaluate digits: ok"):
        assert text in stdout
    lines = stdout.splitlines()
    streaming = next(i for i, line in enumerate(lines) if line.startswith("streaming "))
    assert any(line.strip().startswith("console ") for line in lines[:streaming])  # pointers first, then traffic
    key = next(line.rsplit(" ", 1)[1] for line in lines if line.startswith("API key"))
    assert lines[-1].startswith("console: http://127.0.0.1:") and lines[-1].endswith(f"(sign in with the API key {key})")
    week = Week.containing(started).name
    assert f"-m monitor.server.cli report --model digits --week {week} --out report.html" in stdout
    import yaml

    slos = yaml.safe_load((ROOT / "examples" / "cvmon.yaml").read_text())["slos"]
    assert f"SLOs: {sum(s['model'] == 'digits' for s in slos)} of digits from " in stdout and "examples/cvmon.yaml" in stdout


def test_the_drifted_camera_loses_accuracy_in_the_metrics_and_the_others_do_not(demo_run, accuracy):
    _, started, _ = demo_run
    # The simulated clock runs from (stream start - HOURS) to the stream start, a few seconds
    # after `started`. cam-3 degrades between 50% and 60% of it: compare whole hours before/after.
    sim_start, span, hour = started - timedelta(hours=HOURS), timedelta(hours=HOURS), timedelta(hours=1)
    before = [row for h, row in accuracy.items() if h >= sim_start and h + hour <= sim_start + 0.5 * span]
    after = [row for h, row in accuracy.items() if h >= sim_start + 0.6 * span + timedelta(minutes=1) and h + hour <= started]
    assert before and after, accuracy
    for row in before:
        assert row["cam-3"] > 0.8, row
    for row in after:
        assert row["cam-3"] < 0.75, row
        assert min(row[c] for c in ("cam-1", "cam-2", "cam-4")) > 0.8, row
        assert row["cam-3"] < min(row[c] for c in ("cam-1", "cam-2", "cam-4")) - 0.2, row


def test_predictions_carry_embeddings_latencies_and_delayed_labels(demo_run):
    import sqlalchemy as sa

    from monitor.server.store import tables as t
    from monitor.server.store.engine import make_engine

    work, _, _ = demo_run
    engine = make_engine(f"sqlite:///{work / 'cvmon.db'}")
    try:
        with engine.connect() as conn:
            p, e, g = t.predictions.c, t.embeddings.c, t.ground_truth.c
            n = conn.execute(sa.select(sa.func.count()).where(p.model == "digits")).scalar_one()
            timed = conn.execute(sa.select(sa.func.count()).where(p.model == "digits", p.latency_ms > 0)).scalar_one()
            embedded = conn.execute(sa.select(sa.func.count()).where(e.model == "digits")).scalar_one()
            labels = conn.execute(sa.select(sa.func.count()).where(g.model == "digits")).scalar_one()
            late = conn.execute(sa.select(sa.func.count()).where(g.model == "digits", g.labelled_at > g.prediction_ts)).scalar_one()
    finally:
        engine.dispose()
    assert n > 1000 and timed == n and embedded == n
    assert 0.5 < labels / n < 0.7  # about the 60% share
    assert late == labels
