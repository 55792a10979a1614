"""Weekly report cost for a 100-class model: time to read the data, time to render, HTML size.

Data (seeded, PostgreSQL scratch database): a 100-class classifier over two weeks (the report week
and the one before, which the report compares with), two versions (v2 rolls out in the report
week), 8 cameras (one degrades midweek), 60% labelled, two SLOs. The real jobs evaluate it
(evaluate, then drift and slo when this build has them); then ``build_report_data`` and
``render_report`` are timed (best and median of --repeat runs, after one warm-up that compiles
the templates).

    python bench/report.py [--predictions 100000] [--classes 100] [--repeat 5] [--out report.html]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from monitor.server.jobs import run_once
from monitor.server.reports.build import build_report_data
from monitor.server.reports.render import render_report
from monitor.server.services.ingest import write_ground_truth, write_predictions
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.slo.spec import load_slos
from monitor.server.store import migrate
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager
from monitor.wire import GroundTruth, Prediction
from testkit.scratch import create_scratch_database, drop_scratch_database, sqlalchemy_url

MODEL = "bench-report"
WEEK_START = datetime(2026, 11, 16, tzinfo=UTC)  # 2026-W47
NOW = WEEK_START + timedelta(days=7, hours=6)  # the Monday after, when the scheduler writes it
BATCH = 5000
SLOS = f"""
slos:
  - {{name: {MODEL}-accuracy, model: {MODEL}, sli: accuracy, objective: 0.9, window: 30d,
     alerting: {{alerts: [{{severity: ticket, long_window: 1d, short_window: 2h, budget_fraction: 0.1}}]}}}}
  - {{name: {MODEL}-latency, model: {MODEL}, sli: latency, objective: 0.99, window: 30d, threshold: 0.05}}
"""


def traffic(n: int, n_classes: int, seed: int) -> tuple[list[Prediction], np.ndarray]:
    """``n`` predictions a week over two weeks; camera 7 degrades from Wednesday of the report week."""
    rng = np.random.default_rng(seed)
    start = WEEK_START - timedelta(days=7)
    stamps = start.timestamp() + rng.uniform(0, 14 * 86400, size=2 * n)
    labels = rng.integers(n_classes, size=2 * n)
    cameras = rng.integers(8, size=2 * n)
    degraded = (cameras == 7) & (stamps >= (WEEK_START + timedelta(days=2)).timestamp())
    logits = rng.normal(size=(2 * n, n_classes)).astype(np.float32)
    logits[np.arange(2 * n), labels] += np.where(degraded, 1.0, 4.0)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    latency = rng.gamma(2.0, 6.0, size=2 * n)
    in_week = stamps >= WEEK_START.timestamp()
    preds = []
    for i in range(2 * n):
        p = probs[i]
        top = int(p.argmax())
        version = "v2" if in_week[i] and i % 3 == 0 else "v1"
        preds.append(Prediction(
            prediction_id=f"p-{i}", model=MODEL, model_version=version, ts=datetime.fromtimestamp(stamps[i], UTC),
            ts_defaulted=False, status=0, latency_ms=float(latency[i]), cohort={"camera": f"cam-{cameras[i]}"},
            predicted_class=top, confidence=float(p[top]), probabilities=p,
        ))  # fmt: skip
    return preds, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=100_000, help="predictions per week (two weeks are written)")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, help="keep the rendered report here")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CVMON_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    args = parser.parse_args()

    scratch = create_scratch_database(args.database_url, "cvmon_bench_report")
    url = sqlalchemy_url(scratch)
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        settings = Settings(database_url=url, cohort_keys=("camera",), scheduler=False, slos=load_slos(SLOS))
        partitions = PartitionManager(engine)
        partitions.ensure_days((WEEK_START + timedelta(days=d)).date() for d in range(-8, 9))
        with write_transaction(engine) as conn:
            register_model(
                conn,
                MODEL,
                "classification",
                [f"class-{c:03d}" for c in range(args.classes)],
                0.5,
                now=WEEK_START - timedelta(days=30),
            )
        print(
            f"loading {2 * args.predictions:,} predictions of a {args.classes}-class model over two weeks, 60% labelled ..."
        )
        t0 = time.perf_counter()
        preds, labels = traffic(args.predictions, args.classes, seed=1)
        labelled = np.random.default_rng(2).random(len(preds)) < 0.6
        # written day by day with the clock at the day's end, so SLO events land on their day
        by_day: dict[datetime, list[int]] = {}
        for i, p in enumerate(preds):
            by_day.setdefault(p.ts.replace(hour=0, minute=0, second=0, microsecond=0), []).append(i)
        for day, idx in sorted(by_day.items()):
            end = day + timedelta(days=1)
            for k in range(0, len(idx), BATCH):
                write_predictions(
                    engine, [preds[i] for i in idx[k : k + BATCH]], now=end, partitions=partitions, slos=settings.slos
                )
            truth = [
                GroundTruth(
                    prediction_id=preds[i].prediction_id,
                    model=MODEL,
                    labelled_at=preds[i].ts + timedelta(hours=1),
                    label=int(labels[i]),
                )
                for i in idx
                if labelled[i]
            ]
            for k in range(0, len(truth), BATCH):
                write_ground_truth(engine, truth[k : k + BATCH], now=end, slos=settings.slos)
        print(f"    loaded in {time.perf_counter() - t0:.0f} s")

        t0 = time.perf_counter()
        for _ in range(20):  # the drift job works a backlog off over a few runs
            outcomes = run_once(engine, settings, clock=lambda: NOW, models=[MODEL])
            for o in outcomes:
                if o.status != "ok":
                    raise SystemExit(f"{o.job} failed: {o.detail}")
            if not any(o.job == "drift" and " 0 left for later" not in o.detail for o in outcomes):
                break
        print(f"    evaluated in {time.perf_counter() - t0:.0f} s ({', '.join(sorted({o.job for o in outcomes}))})")

        build_times, render_times = [], []
        html = ""
        for run in range(args.repeat + 1):
            t0 = time.perf_counter()
            data = build_report_data(engine, MODEL, WEEK_START, settings=settings, clock=lambda: NOW)
            t1 = time.perf_counter()
            html = render_report(data)
            t2 = time.perf_counter()
            if run:  # the first run compiles the templates and warms the connection pool
                build_times.append(t1 - t0)
                render_times.append(t2 - t1)
        size = len(html.encode("utf-8"))
        total = [b + r for b, r in zip(build_times, render_times, strict=True)]
        print()
        print(f"report of {args.classes} classes x 7 days ({2 * args.predictions:,} predictions, {len(data.cohorts)} cohort slices, "
              f"{len(data.drift)} drift series, {len(data.slos)} SLOs)")  # fmt: skip
        print(
            f"{'build_report_data (best / median)':<36} {min(build_times):7.3f} s / {statistics.median(build_times):.3f} s"
        )
        print(
            f"{'render_report (best / median)':<36} {min(render_times):7.3f} s / {statistics.median(render_times):.3f} s"
        )
        print(f"{'total (best / median)':<36} {min(total):7.3f} s / {statistics.median(total):.3f} s   (budget 2 s)")
        print(f"{'HTML size':<36} {size / 1024:7.0f} KiB  ({size:,} bytes; budget 1 MB)")
        if args.out:
            args.out.write_text(html, encoding="utf-8")
            print(f"written to {args.out}")
    finally:
        engine.dispose()
        drop_scratch_database(args.database_url, scratch)


if __name__ == "__main__":
    main()
