"""The demo, end to end: database, key, server, model, traffic, evaluation, where to look."""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from monitor.server.demo import traffic
from monitor.server.demo.model import CLASSES, HIDDEN, INPUT, PROBABILITIES, train
from monitor.server.settings import Settings

MODEL = "digits"
VERSION = "mlp-v1"
#: How often the demo's server evaluates: a simulated hour passes every 20 s of a default run, so
#: the scheduler's usual minute would leave the metric history empty for the stream's first minute.
EVALUATE_INTERVAL_SECONDS = 10.0

Echo = Callable[[str], None]


@dataclass(frozen=True)
class DemoOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    duration: float = 120.0
    rate: float = 40.0
    simulated_hours: float = 6.0
    label_share: float = 0.6
    keep_serving: bool = True
    train_cache: Path | None = None
    seed: int = 0
    #: How to make the drift report, when this build's CLI has the command.
    report_command: str | None = None


@dataclass(frozen=True)
class DemoResult:
    url: str
    api_key: str
    predictions: int
    ground_truth: int


class _Server:
    """The API (uvicorn) in a thread of this process; the main thread plays the cameras."""

    def __init__(self, settings: Settings, host: str, port: int) -> None:
        import uvicorn

        from monitor.server.app import create_app

        config = uvicorn.Config(create_app(settings), host=host, port=port, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="cvmon-api", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start; see the log above")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def prepare(settings: Settings, now: datetime) -> str:
    """Migrate the database, register the model and create a key; returns the key."""
    from monitor.server.services.keys import create_key
    from monitor.server.services.models import register_model
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine, write_transaction

    engine = make_engine(settings.sqlalchemy_url)
    try:
        migrate.upgrade(engine)
        with write_transaction(engine) as conn:
            register_model(conn, MODEL, "classification", list(CLASSES), 0.5, now=now)
            _, key = create_key(conn, scopes=["ingest", "read", "admin"], models=None, name="cvmon demo", now=now)
    finally:
        engine.dispose()
    return key


def evaluate(settings: Settings, echo: Echo) -> None:
    """Run the evaluation pipeline once now (what ``cvmon jobs run-once`` does), so the demo's
    metrics are there at once rather than at the scheduler's next tick."""
    from monitor.server.jobs import maintenance, run_once
    from monitor.server.store.engine import make_engine

    engine = make_engine(settings.sqlalchemy_url)
    try:
        maintenance(engine, settings, clock=_now)
        for outcome in run_once(engine, settings, clock=_now, models=[MODEL]):
            echo(f"  {outcome.job} {outcome.model}: {outcome.status} in {outcome.seconds:.1f} s {outcome.detail}")
    finally:
        engine.dispose()


def _now() -> datetime:
    return datetime.now(UTC)


def hourly_accuracy(url: str, key: str) -> dict[datetime, dict[str, float]]:
    """Accuracy per hour and camera, as the metrics API serves it: ``{hour: {camera: value}}``."""
    query = urllib.parse.urlencode({"window": "1h", "metric": "accuracy", "limit": 10_000})
    request = urllib.request.Request(f"{url}/v1/models/{MODEL}/metrics?{query}", headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        body = json.load(answer)
    table: dict[datetime, dict[str, float]] = {}
    for point in body["series"]:
        if point["cohort"].startswith("camera:") and point["value"] is not None:
            hour = datetime.fromisoformat(point["window_start"])
            table.setdefault(hour, {})[point["cohort"].removeprefix("camera:")] = point["value"]
    return table


def example_config() -> Path | None:
    """``examples/cvmon.yaml``: next to the package in a wheel (pyproject.toml ships it as
    ``monitor/server/demo/cvmon.yaml``), in the source tree otherwise."""
    here = Path(__file__).resolve()
    for path in (here.with_name("cvmon.yaml"), here.parents[3] / "examples" / "cvmon.yaml"):
        if path.is_file():
            return path
    return None


def demo_settings(settings: Settings, echo: Echo) -> Settings:
    """The demo's server: evaluated every :data:`EVALUATE_INTERVAL_SECONDS` at most, and with the
    SLOs of ``digits`` from examples/cvmon.yaml unless the configuration has SLOs of its own, so
    error budgets and burn rates show in the console and on /metrics."""
    from monitor.server.slo.spec import load_slos

    changes: dict[str, Any] = {"evaluate_interval_seconds": min(settings.evaluate_interval_seconds, EVALUATE_INTERVAL_SECONDS)}
    path = example_config()
    if not settings.slos and path is not None:
        slos = tuple(s for s in load_slos(path.read_text(encoding="utf-8"), source=str(path)) if s.model == MODEL)
        changes["slos"] = slos
        echo(f"SLOs: {len(slos)} of {MODEL} from {path}")
    return settings.with_(**changes)


def run(options: DemoOptions, settings: Settings, echo: Echo) -> DemoResult:
    import onnxruntime as ort

    from monitor.adapters import OnnxAdapter, Outputs
    from monitor.sdk import Client

    if not _port_free(options.host, options.port):
        raise RuntimeError(f"{options.host}:{options.port} is in use; pick another with --port")
    url = f"http://{options.host}:{options.port}"
    echo(f"database: {settings.database_url}")
    settings = demo_settings(settings, echo)
    key = prepare(settings, datetime.now(UTC))
    server = _Server(settings, options.host, options.port)
    server.start()
    mon: Client | None = None
    try:
        echo(f"API serving on {url}")
        echo(f"API key (ingest, read, admin; shown once): {key}")
        _where_to_look(url, key, options.report_command, echo, streaming=True)
        echo("training the digits classifier and exporting it to ONNX ...")
        digits = train(cache_dir=options.train_cache, seed=options.seed)
        session = ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])
        spool = Path(settings.database_url.removeprefix("sqlite:///")).parent if settings.is_sqlite else Path(".")
        mon = Client(url, api_key=key, model=MODEL, version=VERSION, classes=len(CLASSES),
                     spool_dir=spool / ".cvmon-demo-spool", exit_timeout=10)  # fmt: skip
        model = OnnxAdapter(session, mon, Outputs(probabilities=PROBABILITIES, embedding=HIDDEN))
        result = _stream(options, digits, model, mon, echo)
        mon.flush(timeout=60)
        echo(f"sent {result[0]} predictions and {result[1]} ground-truth labels ({mon.stats()})")
        echo("evaluating (cvmon jobs run-once) ...")
        evaluate(settings, echo)
        _show_metrics(hourly_accuracy(url, key), echo)
        _where_to_look(url, key, options.report_command, echo)
        echo("")
        echo(f"console: {url}/  (sign in with the API key {key})")
        if options.keep_serving:
            echo("serving until Ctrl-C ...")
            try:
                while server.thread.is_alive():
                    time.sleep(0.5)
            except KeyboardInterrupt:
                echo("stopping")
        return DemoResult(url, key, result[0], result[1])
    finally:
        if mon is not None:
            mon.close(timeout=10)
        server.stop()


def _stream(options: DemoOptions, digits: Any, model: Any, mon: Any, echo: Echo) -> tuple[int, int]:
    """Play the cameras in real time; returns the numbers of predictions and labels sent."""
    rng = np.random.default_rng(options.seed)
    schedule = traffic.Schedule(options.duration, options.simulated_hours, time.time() - options.simulated_hours * 3600)
    run_id = secrets.token_hex(3)

    def send_label(pid: str, label: str, labelled_at: float) -> None:
        mon.log_ground_truth(pid, label=label, timestamp=min(labelled_at, time.time()))

    labeller = traffic.Labeller(schedule, options.label_share, send_label, rng)
    tick = 0.25
    count = 0
    start = time.monotonic()
    next_report = start + max(2.0, options.duration / 10)
    echo(f"streaming {options.rate:g} predictions/s from {len(traffic.CAMERAS)} cameras for {options.duration:g} s "
         f"({options.simulated_hours:g} simulated hours); cam-3 drifts from the middle of the run")  # fmt: skip
    while (elapsed := time.monotonic() - start) < options.duration:
        progress = elapsed / options.duration
        for camera in traffic.CAMERAS:
            n = int(rng.poisson(options.rate * tick / len(traffic.CAMERAS)))
            if n == 0:
                continue
            images, labels = traffic.frames(digits, camera, n, progress, rng)
            ids = [f"{run_id}-{camera.name}-{count + i}" for i in range(n)]
            ts = schedule.simulated(elapsed)
            model.run(["label"], {INPUT: images.reshape(n, -1)}, cohort={"camera": camera.name},
                      prediction_ids=ids, timestamp=ts)  # fmt: skip
            count += n
            for pid, label in zip(ids, labels, strict=True):
                labeller.predicted(pid, CLASSES[int(label)], time.monotonic(), ts)
        labeller.release(time.monotonic())
        if time.monotonic() >= next_report:
            next_report += max(2.0, options.duration / 10)
            sim = datetime.fromtimestamp(schedule.simulated(elapsed), UTC).strftime("%H:%M")
            echo(f"  {elapsed:5.0f} s  simulated {sim} UTC  {count} predictions  {labeller.sent} labels  "
                 f"cam-3 condition {traffic.severity(progress):.0%} degraded")  # fmt: skip
        time.sleep(max(0.0, tick - (time.monotonic() - start - elapsed)))
    labeller.release(float("inf"))  # the labelling backlog catches up at the end of the demo
    return count, labeller.sent


def _show_metrics(table: dict[datetime, dict[str, float]], echo: Echo) -> None:
    cameras = [c.name for c in traffic.CAMERAS]
    echo("")
    echo("hourly accuracy per camera, from GET /v1/models/digits/metrics?window=1h&metric=accuracy:")
    echo("  hour (UTC)        " + "".join(f"{name:>8}" for name in cameras))
    for hour in sorted(table):
        row = table[hour]
        cells = "".join(f"{row[name]:>8.1%}" if name in row else f"{'-':>8}" for name in cameras)
        echo(f"  {hour:%Y-%m-%d %H:%M}  {cells}")
    echo("  cam-3 drifts (rotation, blur, over-exposure) from the middle of the run.")


def _where_to_look(url: str, key: str, report_command: str | None, echo: Echo, *, streaming: bool = False) -> None:
    auth = f'-H "Authorization: Bearer {key}"'
    echo("")
    echo("where to look (these work while the cameras stream, and after):" if streaming else "where to look:")
    echo(f"  console             {url}/  (sign in with the API key above)")
    echo(f"  API docs            {url}/docs")
    echo(f"  the model           curl {auth} {url}/v1/models/{MODEL}")
    echo(f"  cam-3 metrics       curl {auth} '{url}/v1/models/{MODEL}/metrics?window=1h&cohort=camera:cam-3'")
    echo(f"  Prometheus metrics  {url}/metrics")
    if report_command is not None:
        from monitor.server.services.weeks import Week

        week = Week.containing(datetime.now(UTC)).name  # the demo's traffic is this week's
        echo(f"  weekly report       {report_command} --week {week} --out report.html")
