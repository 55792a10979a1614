"""Evaluation pipeline cost: first full evaluation, incremental run after 1% late labels, and a
/metrics scrape.

Data (seeded, PostgreSQL): a classification model with N predictions (10 classes, two versions,
four cameras) and a detection model with M images (COCO-like: 80 classes, ~7 boxes per image,
up to 20 detections), spread over 7 days, 60% labelled. Then:

  1. full: the evaluate job for both models from nothing (every hour dirty);
  2. incremental, worst case: 1% more of the predictions get their first label, spread over the
     whole week (every hour and every window changes), then the same run again;
  3. incremental, recent: another 1% of the predictions, all from the last 24 hours (labels that
     lag their predictions by hours, the usual case), then the same run again;
  4. scrape: 20 models x 50 classes evaluated, then GET /metrics over HTTP (p50 / max of 20) when
     every model's results changed since the previous scrape, when 5 did, and when none did.

    python bench/pipeline.py [--predictions 1000000] [--images 100000] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from datetime import timedelta

import numpy as np
import sqlalchemy as sa

from monitor.server.jobs import run_once
from monitor.server.services.ingest import write_ground_truth, write_predictions
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.store import migrate
from monitor.server.store import tables as t
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager
from monitor.wire import GroundTruth, Prediction
from testkit.scratch import create_scratch_database, drop_scratch_database, sqlalchemy_url
from testkit.week import NOW, classification, detection, labels_for

BATCH = 5000


def write(engine, partitions, preds: list[Prediction], gts: list[GroundTruth]) -> None:  # type: ignore[no-untyped-def]
    for k in range(0, len(preds), BATCH):
        write_predictions(engine, preds[k : k + BATCH], now=NOW, partitions=partitions)
    for k in range(0, len(gts), BATCH):
        write_ground_truth(engine, gts[k : k + BATCH], now=NOW)


def timed_run(engine, settings: Settings, models: list[str]) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    # the evaluation (hour states, late labels, windows, history); the drift job scores windows of
    # predictions, which late labels do not change, and is timed by bench/drift.py
    outcomes = run_once(engine, settings, clock=lambda: NOW, models=models, jobs=["evaluate"])
    seconds = time.perf_counter() - t0
    for o in outcomes:
        if o.status != "ok":
            raise SystemExit(f"{o.job} failed for {o.model}: {o.detail}")
        print(f"    {o.model:<16} {o.seconds:7.1f}s  {o.detail}")
    return seconds


def scrape(engine, settings: Settings, n_models: int, n_classes: int, per_model: int) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    import httpx

    from monitor.server.app import create_app
    from testkit.servers import ThreadServer

    partitions = PartitionManager(engine)
    names = []
    for m in range(n_models):
        name = f"scrape-{m:02d}"
        with write_transaction(engine) as conn:
            register_model(conn, name, "classification", [f"c{c}" for c in range(n_classes)], 0.5, now=NOW)
        preds, labels = classification(name, per_model, n_classes, seed=100 + m)
        write(engine, partitions, preds, labels_for(name, np.arange(per_model), labels, None, NOW))
        names.append(name)
    run_once(engine, settings, clock=lambda: NOW, models=names, jobs=["evaluate"])
    app = create_app(settings.with_(auth_disabled=True), engine=engine, clock=lambda: NOW)
    generations = t.metric_latest_generations
    times: dict[str, list[float]] = {}
    with ThreadServer(app) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        body = client.get("/metrics").text
        # what a scrape finds changed since the previous one: every model (the first scrape after
        # a start), a quarter (the evaluate job runs every 60 s, Prometheus scrapes every 15 s), none
        quarter = names[: max(1, len(names) // 4)]
        cases = ((f"all {len(names)} models changed", names), (f"{len(quarter)} models changed", quarter), ("nothing changed", []))
        for case, changed in cases:
            for _ in range(20):
                with write_transaction(engine) as conn:
                    conn.execute(
                        sa.update(generations).where(generations.c.model.in_(changed)).values(generation=generations.c.generation + 1)
                    )
                t0 = time.perf_counter()
                client.get("/metrics").raise_for_status()
                times.setdefault(case, []).append(time.perf_counter() - t0)
    print(f"    /metrics: {len(body.splitlines()):,} lines, {len(body) / 1e6:.1f} MB")
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="100 000 predictions, 10 000 images, 5 scrape models")
    parser.add_argument("--scrape-models", type=int, help="models in the scrape (default 20, 5 with --quick)")
    parser.add_argument("--scrape-only", action="store_true", help="skip the evaluation runs: only the /metrics scrape")
    parser.add_argument("--database-url", default=os.environ.get("CVMON_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    args = parser.parse_args()
    n_pred, n_img, n_models = (100_000, 10_000, 5) if args.quick else (args.predictions, args.images, 20)
    n_models = args.scrape_models or n_models

    scratch = create_scratch_database(args.database_url, "cvmon_bench_pipeline")
    url = sqlalchemy_url(scratch)
    try:
        engine = make_engine(url)
        migrate.upgrade(engine)
        settings = Settings(database_url=url, cohort_keys=("camera",), scheduler=False)
        partitions = PartitionManager(engine)
        partitions.ensure_days((NOW - timedelta(days=d)).date() for d in range(9))
        if not args.scrape_only:
            with write_transaction(engine) as conn:
                register_model(conn, "bench-cls", "classification", [f"c{c}" for c in range(10)], 0.5, now=NOW)
                register_model(conn, "bench-det", "detection", [f"d{c}" for c in range(80)], 0.5, now=NOW)
            print(f"loading {n_pred:,} classification predictions and {n_img:,} detection images over 7 days, 60% labelled ...")
            t0 = time.perf_counter()
            rng = np.random.default_rng(0)
            cls_preds, cls_labels = classification("bench-cls", n_pred, 10, seed=1)
            det_preds, det_truth = detection("bench-det", n_img, seed=2)
            cls_order, det_order = rng.permutation(n_pred), rng.permutation(n_img)
            cls_first, det_first = cls_order[: int(0.6 * n_pred)], det_order[: int(0.6 * n_img)]
            write(engine, partitions, cls_preds, labels_for("bench-cls", cls_first, cls_labels, None, NOW))
            write(engine, partitions, det_preds, labels_for("bench-det", det_first, None, det_truth, NOW))
            print(f"    loaded in {time.perf_counter() - t0:.0f}s")
            # The labels of steps 2 and 3 are made now, and the generated records dropped before
            # anything is timed: a cvmon worker holds no 1.1 million Python objects besides its
            # job, and here each full garbage collection walked them (0.34 s, in whichever run it
            # fell).
            later, latest = NOW + timedelta(minutes=5), NOW + timedelta(minutes=10)
            late_cls = cls_order[int(0.6 * n_pred) : int(0.61 * n_pred)]
            late_det = det_order[int(0.6 * n_img) : int(0.61 * n_img)]
            spread_labels = (labels_for("bench-cls", late_cls, cls_labels, None, later), labels_for("bench-det", late_det, None, det_truth, later))
            day_ago = NOW - timedelta(days=1)
            recent_cls = [i for i in cls_order[int(0.61 * n_pred) :] if cls_preds[i].ts >= day_ago][: len(late_cls)]
            recent_det = [i for i in det_order[int(0.61 * n_img) :] if det_preds[i].ts >= day_ago][: len(late_det)]
            recent_labels = (
                labels_for("bench-cls", np.array(recent_cls), cls_labels, None, latest),
                labels_for("bench-det", np.array(recent_det), None, det_truth, latest),
            )
            del cls_preds, det_preds, det_truth
            gc.collect()

            print("1. first full evaluation")
            full = timed_run(engine, settings, ["bench-cls", "bench-det"])
            write_ground_truth(engine, spread_labels[0], now=later)
            write_ground_truth(engine, spread_labels[1], now=later)
            print(f"2. incremental run after 1% late labels ({len(late_cls):,} + {len(late_det):,}, spread over the week)")
            spread = timed_run(engine, settings, ["bench-cls", "bench-det"])
            write_ground_truth(engine, recent_labels[0], now=latest)
            write_ground_truth(engine, recent_labels[1], now=latest)
            print(f"3. incremental run after 1% late labels ({len(recent_cls):,} + {len(recent_det):,}, of the last 24 h)")
            recent = timed_run(engine, settings, ["bench-cls", "bench-det"])
        print(f"4. scrape with {n_models} models x 50 classes")
        scrapes = scrape(engine, settings, n_models, 50, 2000)
        print()
        if not args.scrape_only:
            print(f"{'full evaluation':<36} {full:8.1f} s")
            print(f"{'incremental, 1% late over the week':<36} {spread:8.1f} s   ({spread / full:.1%} of full)")
            print(f"{'incremental, 1% late of the last 24 h':<36} {recent:8.1f} s   ({recent / full:.1%} of full)")
        for case, seconds in scrapes.items():
            print(f"{'GET /metrics, ' + case:<36} {1e3 * statistics.median(seconds):8.1f} ms p50, {1e3 * max(seconds):.1f} ms max of 20")
        engine.dispose()
    finally:
        drop_scratch_database(args.database_url, scratch)


if __name__ == "__main__":
    main()
