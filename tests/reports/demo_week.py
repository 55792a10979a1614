"""The demo's data for a whole report week, made in-process from the demo's building blocks.

``cvmon demo`` plays a few simulated hours in real time; a weekly report needs two weeks (the week
and the one before). This drives the same pieces -- the digits MLP exported to ONNX and run by
onnxruntime, the four cameras of :mod:`monitor.server.demo.traffic` with cam-3 knocked askew,
blurred and over-exposed from Tuesday 14:00 of the report week, a 60 % share of delayed labels --
over two simulated weeks, posting through the real HTTP API with the server's clock following
the simulated time, then runs the real jobs (evaluate, drift, slo) the way the scheduler would.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from monitor.server.demo import traffic
from monitor.server.demo.model import CLASSES, HIDDEN, INPUT, PROBABILITIES, train
from monitor.server.demo.run import MODEL, VERSION
from monitor.wire import encode_array

#: The report week of the demo: 2026-W47 (Mon 16 Nov 2026 - Sun 22 Nov).
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)
#: When cam-3 starts to degrade (fully degraded 6 hours later).
DRIFT_START = WEEK_START + timedelta(days=1, hours=14)
#: The jobs run as the scheduler would on the Monday after the week.
REPORT_TIME = WEEK_START + timedelta(days=7, hours=6)
HOUR = timedelta(hours=1)
LABEL_SHARE = 0.6

SLOS_YAML = """
slos:
  - {name: digits-accuracy, model: digits, sli: accuracy, objective: 0.95, window: 30d}
  - {name: digits-accuracy-cam-3, model: digits, sli: accuracy, objective: 0.95, window: 30d, cohort: {camera: cam-3}}
  - {name: digits-latency, model: digits, sli: latency, objective: 0.99, window: 30d, threshold: 0.05}
  - {name: digits-availability, model: digits, sli: availability, objective: 0.999, window: 30d}
"""


class SimClock:
    """The server's clock, moved along with the simulated traffic."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@dataclass(frozen=True)
class DemoWeek:
    predictions: int
    labels: int


def progress_at(ts: datetime) -> float:
    """The demo's ``progress`` argument for a simulated time: its severity ramp (0.5 -> 0.6) is
    mapped onto the six hours after :data:`DRIFT_START`."""
    return 0.5 + 0.1 * (ts - DRIFT_START) / timedelta(hours=6)


def generate(
    client: Any,
    clock: SimClock,
    *,
    per_camera_hour: int = 6,
    seed: int = 0,
    cache: Path | None = None,
    start: datetime = WEEK_START - timedelta(days=7),
    hours: int = 14 * 24,
) -> DemoWeek:
    """Register ``digits`` and post ``hours`` hours of its camera traffic and delayed labels from
    ``start`` (by default both weeks), a day at a time (a short span: at its end)."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    digits = train(cache_dir=cache, seed=seed)
    session = ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])
    answer = client.put(f"/v1/models/{MODEL}", json={"task": "classification", "classes": list(CLASSES)})
    assert answer.status_code in (200, 201), answer.text
    predictions = labels = 0
    records: list[dict[str, Any]] = []
    truth: list[dict[str, Any]] = []
    for hour in range(hours):
        hour_start = start + hour * HOUR
        for camera in traffic.CAMERAS:
            n = int(rng.poisson(per_camera_hour))
            if n == 0:
                continue
            stamps = sorted(hour_start + timedelta(seconds=float(s)) for s in rng.uniform(0, 3600, n))
            images, true = traffic.frames(digits, camera, n, progress_at(stamps[0]), rng)
            probs, hidden = session.run([PROBABILITIES, HIDDEN], {INPUT: images.reshape(n, -1)})
            for i, ts in enumerate(stamps):
                pid = f"{camera.name}-{ts.timestamp():.3f}-{i}"
                records.append(
                    {
                        "prediction_id": pid,
                        "model": MODEL,
                        "model_version": VERSION,
                        "timestamp": ts.isoformat(),
                        "probabilities": encode_array(probs[i]),
                        "embedding": encode_array(hidden[i]),
                        "latency_ms": float(rng.gamma(4.0, 2.5)),
                        "cohort": {"camera": camera.name},
                    }
                )
                if zlib.crc32(pid.encode()) % 1000 < LABEL_SHARE * 1000:
                    labelled_at = ts + timedelta(minutes=float(rng.uniform(15, 90)))
                    truth.append(
                        {
                            "prediction_id": pid,
                            "model": MODEL,
                            "label": CLASSES[int(true[i])],
                            "timestamp": labelled_at.isoformat(),
                        }
                    )
        if (hour + 1) % 24 and hour + 1 < hours:
            continue
        clock.now = hour_start + HOUR  # the day's traffic arrives by its end
        for k in range(0, len(records), 2000):
            body = client.post("/v1/predictions", json={"records": records[k : k + 2000]}).json()
            assert body["accepted"] == len(records[k : k + 2000]), body
        for k in range(0, len(truth), 2000):
            body = client.post("/v1/ground-truth", json={"records": truth[k : k + 2000]}).json()
            assert body["accepted"] == len(truth[k : k + 2000]), body
        predictions += len(records)
        labels += len(truth)
        records, truth = [], []
    return DemoWeek(predictions, labels)


def run_jobs(
    engine: Any, settings: Any, clock: SimClock, *, at: datetime = REPORT_TIME, max_rounds: int = 12
) -> list[Any]:
    """The scheduler's ticks at ``at`` (by default the Monday after the week), until the drift job
    (when this build has one) has no window left for later runs. The evaluation must succeed; the
    other jobs' outcomes are returned for the caller to show."""
    from monitor.server.jobs import maintenance, run_once

    clock.now = at
    maintenance(engine, settings, clock=clock)
    outcomes = []
    for _ in range(max_rounds):
        done = run_once(engine, settings, clock=clock, models=[MODEL])
        outcomes.extend(done)
        assert all(o.status == "ok" for o in done if o.job == "evaluate"), done
        if not any(o.job == "drift" and o.status == "ok" and " 0 left for later" not in o.detail for o in done):
            break
    return outcomes


#: The span ``cvmon demo`` plays: six hours around cam-3's turn at the demo's rate (40
#: predictions/s over 120 s, about 200 per camera-hour), evaluated half an hour after its end.
SHORT_START = DRIFT_START - 3 * HOUR
SHORT_HOURS = 6
SHORT_RATE = 200
SHORT_JOBS_AT = SHORT_START + SHORT_HOURS * HOUR + HOUR / 2


@dataclass
class DemoServer:
    """The demo's data behind a running API: an httpx client with an all-scopes key, the engine,
    settings and clock the jobs used."""

    client: Any
    engine: Any
    settings: Any
    clock: SimClock
    url: str
    key: str

    def report(self) -> Any:
        from monitor.server.reports.build import build_report_data

        return build_report_data(self.engine, MODEL, WEEK_START, settings=self.settings, clock=self.clock)


@contextmanager
def demo_server(work: Path, *, short: bool = False) -> Iterator[DemoServer]:
    """The demo's traffic through the API and the jobs on a fresh embedded database in ``work``:
    both weeks (the report week complete), or ``short``: the six hours ``cvmon demo`` plays."""
    import httpx

    from monitor.server.app import create_app
    from monitor.server.services.keys import create_key
    from monitor.server.settings import Settings
    from monitor.server.slo.spec import load_slos
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine, write_transaction
    from testkit.servers import ThreadServer

    url = f"sqlite:///{work / 'cvmon.db'}"
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        with write_transaction(engine) as conn:
            _, key = create_key(conn, scopes=["ingest", "read", "admin"], models=None, name="demo", now=datetime.now(UTC))
        settings = Settings(database_url=url, scheduler=False, slos=load_slos(SLOS_YAML))
        clock = SimClock(SHORT_START if short else WEEK_START)
        with (
            ThreadServer(create_app(settings, clock=clock)) as server,
            httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as client,
        ):
            if short:
                generate(client, clock, cache=work / "model-cache", start=SHORT_START, hours=SHORT_HOURS,
                         per_camera_hour=SHORT_RATE)  # fmt: skip
                run_jobs(engine, settings, clock, at=SHORT_JOBS_AT)
            else:
                generate(client, clock, cache=work / "model-cache")
                run_jobs(engine, settings, clock)
            yield DemoServer(client, engine, settings, clock, server.url, key)
    finally:
        engine.dispose()


def build_report(work: Path) -> Any:
    """The demo's two weeks through the API and the jobs on a fresh embedded database in ``work``;
    returns the report data of the demo week (what the Chromium test and docs/report.png show)."""
    with demo_server(work) as demo:
        return demo.report()
