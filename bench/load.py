"""Sustained mixed load on loopback: is cvmon still standing, and still right, after it?

What runs, against a scratch PostgreSQL database (created next to --database-url, dropped after):

  * ``cvmon serve --workers 2`` with its scheduler on, and one ``cvmon worker``;
  * N client processes, each an inference service with the real SDK: a classification model and
    a detection model, every prediction with a 256-d float16 embedding, a camera cohort and its
    latency, at a steady rate; ground truth for half of them arrives ``--label-delay`` seconds
    later (late, from the same process, like a review tool);
  * a scraper: GET /metrics every ``--scrape-interval`` seconds, like Prometheus.

What it reports (and writes to ``--json``):

  * sustained records/s: predictions + ground truth acknowledged by the server, over the run;
  * ingest p99: the SDK's POST latency as the clients saw it (every request timed through the
    SDK's transport seam), and the server's own histogram (cvmon_http_request_duration_seconds);
  * scrape p99 and size;
  * RSS of every process sampled every 5 s: half-way, last, peak, and the growth and slope over
    the second half of the run (growth that start-up does not explain);
  * errors: HTTP 5xx on the server, records the SDK dropped or the server rejected, scrapes that
    were not 200, failed job runs, tracebacks in the server's and worker's logs — and records
    lost or stored twice (every id the clients logged is counted in the database).

    python bench/load.py [--duration 600] [--clients 4] [--rate 200] [--json out.json]

The CI runs ``--duration 30`` (tests/scale/test_load.py) and checks the JSON; the 10-minute run
is the one docs/operations.md quotes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


CLASSES = [f"class-{i}" for i in range(10)]
DET_CLASSES = ["person", "car", "bicycle", "dog", "box"]
EMBEDDING_DIM = 256


# --------------------------------------------------------------------------------------------
# a client process


class TimedTransport:
    """The SDK's HTTP transport, timing every POST (the SDK's transport seam)."""

    def __init__(self, url: str) -> None:
        from monitor.sdk import HTTPTransport

        self.inner = HTTPTransport(url, timeout=30)
        self.timings: list[float] = []
        self.statuses: dict[int, int] = {}

    def post(self, path: str, body: bytes, headers: Any) -> Any:
        t0 = time.perf_counter()
        answer = self.inner.post(path, body, headers)
        self.timings.append(time.perf_counter() - t0)
        self.statuses[answer.status] = self.statuses.get(answer.status, 0) + 1
        return answer

    def close(self) -> None:
        self.inner.close()


def run_client(args: argparse.Namespace) -> None:
    """One inference service: log at ``--rate`` predictions/s for ``--duration`` s, labels late."""
    from monitor.sdk import Client

    rng = np.random.default_rng(args.seed)
    transports = [TimedTransport(args.url), TimedTransport(args.url)]  # one connection per sender thread
    common = {
        "api_key": args.key,
        "batch_size": 250,
        "flush_interval": 0.5,
        "embedding_dtype": "float16",
        "trace": False,
    }
    cls = Client(
        args.url,
        model=args.cls_model,
        version="v1",
        classes=CLASSES,
        spool_dir=args.spool,
        transport=transports[0],
        **common,
    )
    det = Client(args.url, model=args.det_model, version="v1", classes=DET_CLASSES, spool_dir=args.spool + "-det",
                 transport=transports[1], **common)  # fmt: skip
    pending: deque[tuple[float, Client, str, dict[str, Any]]] = deque()
    logged = {"classification": 0, "detection": 0, "labels": 0}
    start = time.monotonic()
    period = 1.0 / args.rate
    i = 0
    while (now := time.monotonic()) - start < args.duration:
        emb = rng.normal(size=EMBEDDING_DIM).astype(np.float32)
        camera = {"camera": f"cam-{i % 8}"}
        if i % 4:  # three classifications for each detection
            logits = rng.normal(size=len(CLASSES))
            p = np.exp(logits) / np.exp(logits).sum()
            pid = cls.log_classification(p, latency_ms=float(rng.uniform(3, 30)), cohort=camera, embedding=emb)
            logged["classification"] += 1
            if i % 2 == 0:
                pending.append((now + args.label_delay, cls, pid, {"label": int(rng.integers(len(CLASSES)))}))
        else:
            n = int(rng.integers(0, 6))
            xy = rng.uniform(0, 600, size=(n, 2))
            boxes = np.hstack([xy, xy + rng.uniform(5, 80, size=(n, 2))])
            classes = rng.integers(len(DET_CLASSES), size=n)
            pid = det.log_detection(boxes, classes, rng.uniform(0.05, 1, size=n), latency_ms=float(rng.uniform(10, 60)),
                                    cohort=camera, embedding=emb)  # fmt: skip
            logged["detection"] += 1
            pending.append((now + args.label_delay, det, pid, {"boxes": boxes + rng.normal(0, 2, size=boxes.shape).clip(-1, 1),
                                                                 "box_classes": classes}))  # fmt: skip
        while pending and pending[0][0] <= now:
            _, client, label_pid, label = pending.popleft()
            client.log_ground_truth(label_pid, **label)
            logged["labels"] += 1
        i += 1
        delay = start + i * period - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for _, client, label_pid, label in pending:  # the rest of the labels: the review caught up
        client.log_ground_truth(label_pid, **label)
        logged["labels"] += 1
    flushed = cls.flush(timeout=120) and det.flush(timeout=120)
    stats = {"classification": asdict(cls.stats()), "detection": asdict(det.stats())}
    cls.close(timeout=10)
    det.close(timeout=10)
    statuses: dict[int, int] = {}
    for tr in transports:
        for status, n in tr.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    Path(args.out).write_text(json.dumps({"logged": logged, "flushed": flushed, "stats": stats,
                                          "timings": [x for tr in transports for x in tr.timings], "statuses": statuses}))  # fmt: skip


# --------------------------------------------------------------------------------------------
# the run


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    rss: list[tuple[float, int]] = field(default_factory=list)

    def pids(self) -> list[int]:
        """The process and its children (uvicorn's workers under `serve --workers 2`)."""
        out = [self.popen.pid]
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.popen.pid}/task").iterdir():
                out += [int(p) for p in (task / "children").read_text().split()]
        return out

    def stop(self, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait()


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def spawn(name: str, argv: list[str], env: dict[str, str], logdir: Path) -> Proc:
    log = logdir / f"{name}.log"
    with log.open("ab") as sink:
        popen = subprocess.Popen(
            argv, env={**os.environ, **env}, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    return Proc(name, popen, log)


def wait_ready(port: int, proc: Proc, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"cvmon serve exited:\n{proc.log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise SystemExit("cvmon serve did not become ready")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def slope_mb_per_min(samples: list[tuple[float, int]]) -> float:
    """Least-squares slope of RSS over the second half of the run (after warm-up), MB/min."""
    half = samples[len(samples) // 2 :]
    if len(half) < 3:
        return 0.0
    t = np.array([s[0] for s in half]) / 60
    y = np.array([s[1] for s in half]) / 2**20
    return float(np.polyfit(t, y, 1)[0])


def memory(samples: list[tuple[float, int]]) -> dict[str, Any]:
    """RSS over the run: half-way (after start-up: the jobs' first runs import scipy, numba and
    the detectors), at the end, the peak, the growth over the second half and its slope."""
    alive = [(t, b) for t, b in samples if b]  # a client that has exited reads 0
    if not alive:
        return {"warm_mb": 0, "last_mb": 0, "peak_mb": 0, "growth_mb": 0, "slope_mb_per_min": 0, "samples": []}
    warm = alive[len(alive) // 2][1] / 2**20
    last = alive[-1][1] / 2**20
    return {
        "warm_mb": warm, "last_mb": last, "peak_mb": max(b for _, b in alive) / 2**20, "growth_mb": last - warm,
        "slope_mb_per_min": slope_mb_per_min(alive), "samples": [(round(t), round(b / 2**20, 1)) for t, b in alive],
    }  # fmt: skip


def histogram_p99(metrics_text: str, route: str) -> float | None:
    """The upper bound of the bucket holding the 99th percentile, from the server's histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "cvmon_http_request_duration_seconds":
            continue
        for s in family.samples:
            if s.name.endswith("_bucket") and s.labels.get("route") == route and s.labels.get("method") == "POST":
                le = float(s.labels["le"])
                buckets[le] = buckets.get(le, 0) + s.value
    if not buckets:
        return None
    total = buckets[max(buckets)]
    for le in sorted(buckets):
        if buckets[le] >= 0.99 * total:
            return le
    return None


def server_5xx(metrics_text: str) -> int:
    from prometheus_client.parser import text_string_to_metric_families

    n = 0
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "cvmon_http_request_duration_seconds":
            n += sum(
                int(s.value)
                for s in family.samples
                if s.name.endswith("_count") and s.labels.get("status", "").startswith("5")
            )
    return n


def run(args: argparse.Namespace) -> dict[str, Any]:
    import httpx
    import sqlalchemy as sa

    from monitor.server.services.keys import create_key
    from monitor.server.services.models import register_model
    from monitor.server.store import migrate
    from monitor.server.store import tables as t
    from monitor.server.store.engine import make_engine, write_transaction
    from testkit.scratch import create_scratch_database, drop_scratch_database, sqlalchemy_url

    scratch = create_scratch_database(args.database_url, "cvmon_bench_load")
    url = sqlalchemy_url(scratch)
    workdir = Path(tempfile.mkdtemp(prefix="cvmon-load-"))
    procs: list[Proc] = []
    clients: list[Proc] = []
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        models = []
        with write_transaction(engine) as conn:
            for c in range(args.clients):
                register_model(conn, f"load-cls-{c}", "classification", CLASSES, 0.5, now=now)
                register_model(conn, f"load-det-{c}", "detection", DET_CLASSES, 0.5, now=now)
                models += [f"load-cls-{c}", f"load-det-{c}"]
            _, ingest_key = create_key(conn, scopes=["ingest"], models=None, name="load-clients", now=now)
            _, read_key = create_key(conn, scopes=["read"], models=None, name="load-scraper", now=now)
        port = free_port()
        env = {"CVMON_DATABASE_URL": url, "CVMON_EVALUATE_INTERVAL_SECONDS": str(args.evaluate_interval)}
        scheduler = "0" if args.no_jobs else "1"
        server = spawn("serve", [sys.executable, "-m", "monitor.server.cli", "serve", "--port", str(port), "--workers",
                                 str(args.workers), "--log-level", "warning"], {**env, "CVMON_SCHEDULER": scheduler}, workdir)  # fmt: skip
        procs.append(server)
        wait_ready(port, server)
        if not args.no_jobs:
            procs.append(
                spawn(
                    "worker",
                    [sys.executable, "-m", "monitor.server.cli", "worker", "--log-level", "warning"],
                    env,
                    workdir,
                )
            )
        base = f"http://127.0.0.1:{port}"
        for c in range(args.clients):
            argv = [sys.executable, str(Path(__file__).resolve()), "--client", "--url", base, "--key", ingest_key,
                    "--cls-model", f"load-cls-{c}", "--det-model", f"load-det-{c}", "--rate", str(args.rate),
                    "--duration", str(args.duration), "--label-delay", str(args.label_delay), "--seed", str(c),
                    "--spool", str(workdir / f"spool-{c}"), "--out", str(workdir / f"client-{c}.json")]  # fmt: skip
            clients.append(spawn(f"client-{c}", argv, {}, workdir))
        procs += clients

        scrapes: list[tuple[float, int, int]] = []
        stop = threading.Event()
        started = time.monotonic()

        def scraper() -> None:
            with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {read_key}"}, timeout=60) as http:
                while not stop.is_set():
                    t0 = time.perf_counter()
                    try:
                        r = http.get("/metrics")
                        scrapes.append((time.perf_counter() - t0, r.status_code, len(r.content)))
                    except httpx.TransportError:
                        scrapes.append((time.perf_counter() - t0, 0, 0))
                    stop.wait(args.scrape_interval)

        def sampler() -> None:
            while not stop.is_set():
                elapsed = time.monotonic() - started
                for p in procs:
                    p.rss.append((elapsed, sum(rss(pid) for pid in p.pids())))
                stop.wait(5)

        threads = [threading.Thread(target=scraper, daemon=True), threading.Thread(target=sampler, daemon=True)]
        for th in threads:
            th.start()
        counts: list[tuple[float, int]] = []
        while any(c.popen.poll() is None for c in clients):
            time.sleep(5)
            with engine.connect() as conn:
                n = conn.execute(sa.select(sa.func.count()).select_from(t.predictions)).scalar_one()
            counts.append((time.monotonic() - started, int(n)))
            if time.monotonic() - started > args.duration + 600:
                raise SystemExit("the clients did not finish within 10 minutes of the end of the run")
        stop.set()
        for th in threads:
            th.join()
        final_metrics = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {read_key}"}, timeout=60).text

        results = [json.loads((workdir / f"client-{c}.json").read_text()) for c in range(args.clients)]
        p = t.predictions.c
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.select(p.model, sa.func.count()).group_by(p.model)).all())
            counted = dict(
                conn.execute(
                    sa.select(t.model_versions.c.model, sa.func.sum(t.model_versions.c.predictions)).group_by(
                        t.model_versions.c.model
                    )
                ).all()
            )
            labels = conn.execute(sa.select(sa.func.count()).select_from(t.ground_truth)).scalar_one()
            labels += conn.execute(sa.select(sa.func.count()).select_from(t.ground_truth_pending)).scalar_one()
            jobs = conn.execute(
                sa.select(
                    t.job_runs.c.job, sa.func.sum(t.job_runs.c.runs), sa.func.sum(t.job_runs.c.failures)
                ).group_by(t.job_runs.c.job)
            ).all()
            evaluated = conn.execute(sa.select(sa.func.count()).select_from(t.metric_latest)).scalar_one()
        logged_preds = sum(r["logged"]["classification"] + r["logged"]["detection"] for r in results)
        logged_labels = sum(r["logged"]["labels"] for r in results)
        timings = [x for r in results for x in r["timings"]]
        sdk = {
            k: sum(r["stats"][m][k] for r in results for m in ("classification", "detection"))
            for k in ("sent", "retried", "dropped", "rejected")
        }
        elapsed = max(c for c, _ in counts) if counts else args.duration
        steady = [(t_, n) for t_, n in counts if t_ <= args.duration]
        rate = (steady[-1][1] - steady[0][1]) / (steady[-1][0] - steady[0][0]) if len(steady) >= 2 else 0.0
        logs = {p.name: p.log.read_text(errors="replace") for p in procs}
        report: dict[str, Any] = {
            "duration_s": args.duration,
            "clients": args.clients,
            "rate_per_client": args.rate,
            "workers": args.workers,
            "scrape_interval_s": args.scrape_interval,
            "evaluate_interval_s": args.evaluate_interval,
            "jobs_on": not args.no_jobs,
            "predictions_logged": logged_preds,
            "labels_logged": logged_labels,
            "predictions_stored": int(sum(stored.values())),
            "predictions_counted": int(sum(counted.values())),
            "labels_stored": int(labels),
            "sustained_predictions_per_s": rate,
            "sustained_records_per_s": rate * (1 + logged_labels / max(logged_preds, 1)),
            "ingest_p50_s": percentile(timings, 50),
            "ingest_p99_s": percentile(timings, 99),
            "ingest_requests": len(timings),
            "ingest_p99_server_bucket_s": histogram_p99(final_metrics, "/v1/predictions"),
            "scrape_p99_s": percentile([s[0] for s in scrapes], 99),
            "scrapes": len(scrapes),
            "scrape_bytes": scrapes[-1][2] if scrapes else 0,
            "memory": {p.name: memory(p.rss) for p in procs},
            "jobs": {job: {"runs": int(runs), "failures": int(fail)} for job, runs, fail in jobs},
            "metric_latest_rows": int(evaluated),
            "errors": {
                "server_5xx": server_5xx(final_metrics),
                "client_5xx": sum(n for r in results for s, n in r["statuses"].items() if int(s) >= 500),
                "sdk_dropped": sdk["dropped"],
                "sdk_rejected": sdk["rejected"],
                "clients_not_flushed": sum(not r["flushed"] for r in results),
                "scrapes_not_200": sum(1 for s in scrapes if s[1] != 200),
                "job_failures": int(sum(f for _, _, f in jobs)),
                "tracebacks": {n: text.count("Traceback") for n, text in logs.items() if text.count("Traceback")},
                "lost": logged_preds - int(sum(stored.values())),
                "double_counted": int(sum(counted.values())) - int(sum(stored.values())),
                "labels_lost": logged_labels - int(labels),
            },
            "counts_over_time": counts,
            "logs": str(workdir),
            "elapsed_s": elapsed,
        }
        return report
    finally:
        for p in reversed(procs):
            p.stop()
        with contextlib.suppress(Exception):
            engine.dispose()
        drop_scratch_database(args.database_url, scratch)


def print_report(r: dict[str, Any]) -> None:
    ms = lambda s: "n/a" if s is None else f"{s * 1000:.0f} ms"  # noqa: E731
    print(f"\n{r['clients']} clients x {r['rate_per_client']:.0f} predictions/s for {r['duration_s']:.0f} s "
          f"(serve --workers {r['workers']}{' with its scheduler + 1 worker' if r['jobs_on'] else ', no jobs'}; "
          f"scrape every {r['scrape_interval_s']:.0f} s)")  # fmt: skip
    print(f"  predictions logged {r['predictions_logged']}, stored {r['predictions_stored']}, counted {r['predictions_counted']}; "
          f"labels logged {r['labels_logged']}, stored {r['labels_stored']}")  # fmt: skip
    print(
        f"  sustained: {r['sustained_predictions_per_s']:.0f} predictions/s, {r['sustained_records_per_s']:.0f} records/s (with labels)"
    )
    print(f"  ingest latency (SDK POST of 250 records): p50 {ms(r['ingest_p50_s'])}, p99 {ms(r['ingest_p99_s'])} "
          f"over {r['ingest_requests']} requests; server histogram p99 <= {ms(r['ingest_p99_server_bucket_s'])}")  # fmt: skip
    print(f"  scrape: p99 {ms(r['scrape_p99_s'])} over {r['scrapes']} scrapes, {r['scrape_bytes'] / 1024:.0f} KiB")
    print("  memory (RSS, MB)   half-way    last    peak   growth   slope MB/min (2nd half)")
    for name, m in r["memory"].items():
        print(
            f"    {name:<16} {m['warm_mb']:>8.0f} {m['last_mb']:>7.0f} {m['peak_mb']:>7.0f} {m['growth_mb']:>+8.0f}   {m['slope_mb_per_min']:>+8.2f}"
        )
    print(f"  jobs: {r['jobs']}; metric_latest rows {r['metric_latest_rows']}")
    print(f"  errors: {r['errors']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--rate", type=float, default=200, help="predictions/s per client (default 200)")
    parser.add_argument("--workers", type=int, default=2, help="cvmon serve --workers (default 2)")
    parser.add_argument("--label-delay", type=float, default=30, help="seconds before a label arrives (default 30)")
    parser.add_argument("--scrape-interval", type=float, default=15)
    parser.add_argument(
        "--evaluate-interval", type=float, default=60, help="CVMON_EVALUATE_INTERVAL_SECONDS (default 60)"
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CVMON_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--no-jobs", action="store_true", help="ingest and scrapes only: no scheduler, no worker")
    parser.add_argument("--json", help="write the report here")
    # the client processes' own arguments
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    for name in ("--url", "--key", "--cls-model", "--det-model", "--spool", "--out"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        run_client(args)
        return
    report = run(args)
    print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
