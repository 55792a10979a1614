"""Console pages: server time (p50 / p95) and size of every page, beside the JSON API's time for
the same data, on bench/pipeline.py's data.

Data (seeded, PostgreSQL; bench/pipeline.py's generators): a classification model with N
predictions (10 classes, two versions, four cameras) and a detection model with M images (80
classes), over 7 days, 60 % labelled, with SLOs counted at ingest; evaluated by the evaluate job,
and the classification model's drift scored by the drift job (confidence and class mix: the
generated predictions carry no embeddings). Then the app is served on loopback and each page is
requested ``--repeat`` times after one warm-up request; the server time of a request is measured
inside the process, around the application (from the request's arrival to its last body byte).

    python bench/console.py [--predictions 1000000] [--images 100000] [--quick] [--repeat 30]

Targets (issue 24): p95 <= 200 ms and <= 300 KB per page.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import numpy as np

from monitor.server.jobs import run_once
from monitor.server.services.ingest import write_ground_truth, write_predictions
from monitor.server.services.keys import create_key
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.slo.spec import load_slos
from monitor.server.store import migrate
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager
from testkit.scratch import create_scratch_database, drop_scratch_database, sqlalchemy_url
from testkit.week import NOW, classification, detection, labels_for

CLS, DET = "bench-cls", "bench-det"
BATCH = 5000
SLOS = f"""
slos:
  - {{name: {CLS}-accuracy, model: {CLS}, sli: accuracy, objective: 0.95, window: 30d}}
  - {{name: {CLS}-latency, model: {CLS}, sli: latency, objective: 0.99, window: 30d, threshold: 0.05}}
  - {{name: {DET}-latency, model: {DET}, sli: latency, objective: 0.99, window: 30d, threshold: 0.1}}
  - {{name: {DET}-availability, model: {DET}, sli: availability, objective: 0.999, window: 30d}}
"""
P95_TARGET_MS, SIZE_TARGET_KB = 200.0, 300.0


class Timed:
    """ASGI middleware: the server time of every request, by its path and query."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seconds: dict[str, list[float]] = defaultdict(list)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            target = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
            self.seconds[target].append(time.perf_counter() - t0)


def serve(app: Any) -> tuple[str, Callable[[], None]]:
    import socket

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)

    def stop() -> None:
        server.should_exit = True
        thread.join(30)

    return f"http://127.0.0.1:{port}", stop


def load(engine: Any, settings: Settings, n_pred: int, n_img: int) -> None:
    partitions = PartitionManager(engine)
    partitions.ensure_days((NOW - timedelta(days=d)).date() for d in range(9))
    with write_transaction(engine) as conn:
        register_model(conn, CLS, "classification", [f"c{c}" for c in range(10)], 0.5, now=NOW - timedelta(days=8))
        register_model(conn, DET, "detection", [f"d{c}" for c in range(80)], 0.5, now=NOW - timedelta(days=8))
    print(f"loading {n_pred:,} classification predictions and {n_img:,} detection images over 7 days, 60% labelled ...")
    t0 = time.perf_counter()
    rng = np.random.default_rng(0)
    cls_preds, cls_labels = classification(CLS, n_pred, 10, seed=1)
    det_preds, det_truth = detection(DET, n_img, seed=2)
    labels = [
        *labels_for(CLS, rng.permutation(n_pred)[: int(0.6 * n_pred)], cls_labels, None, NOW),
        *labels_for(DET, rng.permutation(n_img)[: int(0.6 * n_img)], None, det_truth, NOW),
    ]
    preds = [*cls_preds, *det_preds]
    for k in range(0, len(preds), BATCH):
        write_predictions(engine, preds[k : k + BATCH], now=NOW, partitions=partitions, slos=settings.slos)
    for k in range(0, len(labels), BATCH):
        write_ground_truth(engine, labels[k : k + BATCH], now=NOW, slos=settings.slos)
    del preds, labels, cls_preds, det_preds, det_truth
    gc.collect()
    print(f"    loaded in {time.perf_counter() - t0:.0f} s")
    t0 = time.perf_counter()
    outcomes = run_once(engine, settings, clock=lambda: NOW, models=[CLS, DET], jobs=["evaluate", "slo"])
    assert all(o.status == "ok" for o in outcomes), outcomes
    print(f"    evaluated in {time.perf_counter() - t0:.0f} s")


def drift(engine: Any, settings: Settings) -> None:
    t0 = time.perf_counter()
    for _ in range(20):
        done = run_once(engine, settings, clock=lambda: NOW, models=[CLS], jobs=["drift"])
        assert all(o.status == "ok" for o in done), done
        if all(" 0 left for later" in o.detail for o in done):
            break
    print(f"    drift scored in {time.perf_counter() - t0:.0f} s ({done[0].detail})")


def pages(since_day: str, since_week: str, at: str) -> list[tuple[str, str, list[str]]]:
    """(page, console URL, the JSON API requests for the same data)."""

    def api(model: str, since: str, *metrics: str) -> str:
        return f"/v1/models/{model}/metrics?" + urlencode([("window", "1h"), ("since", since), ("limit", "10000"), *(("metric", m) for m in metrics)])

    out: list[tuple[str, str, list[str]]] = [
        ("fleet", "/", ["/v1/models"] + [u for m, q in ((CLS, "accuracy"), (DET, "map")) for u in (f"/v1/models/{m}", api(m, since_day, q))]),
        ("fleet incidents", "/incidents", []),
    ]
    for model, primary in ((CLS, "accuracy"), (DET, "map")):
        out += [
            (f"{model} quality, 24 h", f"/models/{model}", [api(model, since_day, primary, "predictions", "label_coverage")]),
            (f"{model} quality, 7 d", f"/models/{model}?range=7d", [api(model, since_week, primary, "predictions", "label_coverage")]),
            (f"{model} classes", f"/models/{model}/classes",
             [f"/v1/models/{model}/confusion-matrix?window=1h" if model == CLS else api(model, since_day, "ap", "ap50")]),
            (f"{model} calibration", f"/models/{model}/calibration", [api(model, since_day, "ece" if model == CLS else "dece")]),
            (f"{model} drift", f"/models/{model}/drift", [api(model, since_day, "drift_score", "drift_detected", "drift_p_value")]),
            (f"{model} latency & errors", f"/models/{model}/service",
             [api(model, since_day, "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "error_rate", "predictions")]),
            (f"{model} SLOs", f"/models/{model}/slos", ["/metrics"]),
            (f"{model} incidents", f"/models/{model}/incidents", []),
            (f"{model} chart JSON", f"/models/{model}/chart.json?id=quality", [api(model, since_day, primary)]),
        ]  # fmt: skip
    out.append(("cell predictions", f"/models/{CLS}/predictions?at={at}&true=0&pred=1", []))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="100 000 predictions and 10 000 images")
    parser.add_argument("--repeat", type=int, default=30, help="timed requests per page (after one warm-up)")
    parser.add_argument("--no-drift", action="store_true", help="skip the drift job (its pages then show no scores)")
    parser.add_argument("--database-url", default=os.environ.get("CVMON_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--keep", action="store_true", help="keep the scratch database and print its URL (for --reuse)")
    parser.add_argument("--reuse", metavar="URL", help="a database an earlier --keep run loaded: skip loading")
    args = parser.parse_args()
    n_pred, n_img = (100_000, 10_000) if args.quick else (args.predictions, args.images)

    import httpx
    from sqlalchemy.engine import make_url

    from monitor.server.app import create_app

    scratch = make_url(args.reuse) if args.reuse else create_scratch_database(args.database_url, "cvmon_bench_console")
    url = sqlalchemy_url(scratch)
    try:
        engine = make_engine(url)
        settings = Settings(database_url=url, scheduler=False, slos=load_slos(SLOS), drift_detectors=("ks:confidence", "psi:class_mix"),
                            drift_max_windows_per_run=400)  # fmt: skip
        if not args.reuse:
            migrate.upgrade(engine)
            load(engine, settings, n_pred, n_img)
            if not args.no_drift:
                drift(engine, settings)
        with write_transaction(engine) as conn:
            _, key = create_key(conn, scopes=["read", "admin"], models=None, name="bench", now=NOW)
        timed = Timed(create_app(settings, clock=lambda: NOW))
        base, stop = serve(timed)
        hour = NOW.replace(minute=0, second=0, microsecond=0)
        listed = pages((NOW - timedelta(days=1)).isoformat(), (NOW - timedelta(days=7)).isoformat(), (hour - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%MZ"))
        rows = []
        try:
            with httpx.Client(base_url=base, timeout=120) as console, httpx.Client(base_url=base, timeout=120, headers={"Authorization": f"Bearer {key}"}) as api:
                console.get("/login")
                signed = console.post("/login", data={"key": key, "csrf": console.cookies["cvmon_csrf"]})
                assert signed.status_code == 303, signed.text
                for name, page, api_paths in listed:
                    sizes = []
                    for i in range(args.repeat + 1):
                        answer = console.get(page)
                        assert answer.status_code == 200, (page, answer.status_code, answer.text[-500:])
                        sizes.append(len(answer.content))
                        for path in api_paths:
                            assert api.get(path).status_code == 200, path
                        if i == 0:  # the warm-up request is not counted
                            timed.seconds.clear()
                    ms = [1e3 * s for s in timed.seconds[page]]
                    api_ms = [1e3 * sum(group) for group in zip(*(timed.seconds[p] for p in api_paths), strict=True)] if api_paths else []
                    rows.append((name, statistics.median(ms), _p95(ms), max(sizes) / 1024, statistics.median(api_ms) if api_ms else None,
                                 _p95(api_ms) if api_ms else None, len(api_paths)))  # fmt: skip
                    timed.seconds.clear()
        finally:
            stop()
        print()
        print(f"{'page':<32} {'server p50':>10} {'p95':>8} {'size':>9}   {'JSON API p50':>12} {'p95':>8}  (requests)  ratio p95")
        for name, p50, p95, kb, a50, a95, n in rows:
            flag = "" if p95 <= P95_TARGET_MS and kb <= SIZE_TARGET_KB else "  OVER TARGET"
            api_text = f"{a50:9.1f} ms {a95:6.1f} ms  ({n})" if a50 is not None else f"{'—':>12} {'':>8}  (no API)"
            ratio = f"  {p95 / a95:6.2f}x" if a95 else ""
            print(f"{name:<32} {p50:7.1f} ms {p95:5.1f} ms {kb:6.1f} KB   {api_text}{ratio}{flag}")
        worst = max(rows, key=lambda r: r[2])
        biggest = max(rows, key=lambda r: r[3])
        print(f"\nslowest page p95 {worst[2]:.1f} ms ({worst[0]}); largest page {biggest[3]:.1f} KB ({biggest[0]}); "
              f"targets: p95 <= {P95_TARGET_MS:.0f} ms, <= {SIZE_TARGET_KB:.0f} KB")  # fmt: skip
        engine.dispose()
    finally:
        if args.keep or args.reuse:
            print(f"kept the database: --reuse {url}")
        else:
            drop_scratch_database(args.database_url, scratch)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(np.ceil(0.95 * len(ordered))) - 1)]


if __name__ == "__main__":
    main()
