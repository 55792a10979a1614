"""Active learning on the demo's drifting camera: misclassified samples per 100 labelled, the
labelling queue's strategies beside random sampling, in the same run.

The demo's model (the digits MLP exported to ONNX, run by onnxruntime) sees the demo's four
cameras (monitor/server/demo/traffic.py); cam-3 rotates, blurs and over-exposes from the middle of
the stream. Everything goes through the real path: the SDK logs each prediction with its
probabilities, hidden-layer embedding and image (a samples policy that keeps every image, so the
pool is the whole stream), a local ``cvmon`` server masks, seals and stores the samples, and the
queues are built by the labelling service (``build_queue``) over the stored rows. The true digit
of every frame is known here, never sent: a queue's *hits* are the misclassified predictions among
the ``--size`` it picks, i.e. what 100 labels would have found. Random is the mean over
``--seeds`` seeded random queues over the same pool (its 5th-95th percentile beside it).

A reference of healthy traffic (``--reference`` predictions before the stream, all cameras at
progress 0) is what the ``drift`` strategy measures distances from.

The default volume is the demo's: 40 predictions a second for two minutes, 1 200 per camera.

    python bench/active.py [--per-camera 1200] [--size 100] [--seeds 30] [--database-url URL]
"""

from __future__ import annotations

import argparse
import base64
import secrets
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from monitor.sdk import Client, SamplePolicy

MODEL = "digits"
VERSION = "mlp-v1"


def _frames_to_images(frames: np.ndarray) -> np.ndarray:
    """8×8 grey levels 0–16 to 32×32 uint8 images (what a camera would send)."""
    scaled = np.clip(frames * (255.0 / 16.0), 0, 255).astype(np.uint8)
    return np.repeat(np.repeat(scaled, 4, axis=1), 4, axis=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-camera", type=int, default=1200, help="predictions per camera in the stream")
    parser.add_argument("--reference", type=int, default=1000, help="healthy predictions before the stream")
    parser.add_argument("--size", type=int, default=100, help="items per queue (labels spent)")
    parser.add_argument("--seeds", type=int, default=30, help="random queues averaged")
    parser.add_argument("--steps", type=int, default=40, help="progress steps of the stream")
    parser.add_argument("--database-url", default=None, help="default: a scratch SQLite file")
    args = parser.parse_args()

    import onnxruntime as ort

    from monitor.server.app import create_app
    from monitor.server.demo import traffic
    from monitor.server.demo.model import CLASSES, HIDDEN, INPUT, PROBABILITIES, train
    from monitor.server.sample_settings import load_sample_settings
    from monitor.server.services.keys import create_key
    from monitor.server.services.models import model_spec, register_model
    from monitor.server.services.queues import QueueSpec, build_queue, queue_items
    from monitor.server.settings import Settings
    from monitor.server.store import migrate
    from monitor.server.store.engine import make_engine, write_transaction
    from testkit.servers import ThreadServer

    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite:///{tmp}/active.db"
        key_text = base64.b64encode(secrets.token_bytes(32)).decode()
        samples = load_sample_settings({"models": {MODEL: {}}, "store": f"{tmp}/samples", "keys": {"k": key_text}}, {})
        settings = Settings(database_url=url, scheduler=False, samples=samples)
        engine = make_engine(settings.sqlalchemy_url)
        migrate.upgrade(engine)
        now = datetime.now(UTC)
        with write_transaction(engine) as conn:
            register_model(conn, MODEL, "classification", list(CLASSES), 0.5, now=now)
            _, api_key = create_key(conn, scopes=["ingest"], models=None, name="bench", now=now)
        digits = train(seed=0, cache_dir=Path(tmp))
        session = ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])

        def infer(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            probs, hidden = session.run([PROBABILITIES, HIDDEN], {INPUT: frames.reshape(len(frames), -1).astype(np.float32)})
            return np.asarray(probs), np.asarray(hidden)

        rng = np.random.default_rng(0)
        truth: dict[str, tuple[bool, str]] = {}  # prediction id -> (misclassified, camera)
        with ThreadServer(create_app(settings, engine=engine)) as server:
            mon = Client(server.url, api_key=api_key, model=MODEL, version=VERSION, classes=len(CLASSES),
                         spool_dir=Path(tmp) / "spool", max_queue=10**6,
                         samples=SamplePolicy(rate=1.0, low_confidence=None, max_side=32, max_per_hour=10**6))  # fmt: skip
            t0 = time.perf_counter()
            start = now - timedelta(hours=8)
            # the reference: healthy cameras, before the stream (no images needed)
            for j, camera in enumerate(traffic.CAMERAS):
                frames, _ = traffic.frames(digits, camera, args.reference // len(traffic.CAMERAS), 0.0, rng)
                probs, hidden = infer(frames)
                for i in range(len(frames)):
                    mon.log_classification(probs[i], embedding=hidden[i], cohort={"camera": camera.name},
                                           timestamp=start + timedelta(seconds=j * 1000 + i))  # fmt: skip
            stream_start = now - timedelta(hours=6)
            per_step = max(1, args.per_camera // args.steps)
            for step in range(args.steps):
                progress = step / max(1, args.steps - 1)
                ts = stream_start + timedelta(hours=6 * progress * 0.99)
                for camera in traffic.CAMERAS:
                    frames, labels = traffic.frames(digits, camera, per_step, progress, rng)
                    probs, hidden = infer(frames)
                    images = _frames_to_images(frames)
                    for i in range(len(frames)):
                        pid = mon.log_classification(probs[i], embedding=hidden[i], cohort={"camera": camera.name},
                                                     timestamp=ts, image=images[i])  # fmt: skip
                        truth[pid] = (int(probs[i].argmax()) != int(labels[i]), camera.name)
            delivered = mon.flush(600)
            mon.close(60)
            logged = time.perf_counter() - t0
        stats = mon.stats()
        print(f"pool: {len(truth)} predictions with samples ({args.per_camera // args.steps * args.steps} per camera over "
              f"{args.steps} steps; cam-3 drifts from the middle), reference {args.reference}; logged and stored in "
              f"{logged:.1f} s (all delivered: {delivered}, rejected {stats.rejected})")  # fmt: skip
        errors = sum(m for m, _ in truth.values())
        cam3 = [m for m, c in truth.values() if c == "cam-3"]
        print(f"misclassified in the pool: {errors / len(truth):.1%} overall, {sum(cam3) / len(cam3):.1%} on cam-3\n")

        def hits(name: str, q: QueueSpec) -> tuple[int, int]:
            with write_transaction(engine) as conn:
                spec = model_spec(conn, MODEL)
                assert spec is not None
                build_queue(conn, settings.automation, spec, name, q, now=datetime.now(UTC))
                items = queue_items(conn, MODEL, name)
            return sum(truth[i.prediction_id][0] for i in items), len(items)

        since = stream_start - timedelta(minutes=1)
        for scope, cohort in (("every camera", None), ("cam-3 only", ("camera", "cam-3"))):
            random_hits = []
            for seed in range(args.seeds):
                found, n = hits("random", QueueSpec(strategy="random", size=args.size, seed=seed, since=since, cohort=cohort))
                random_hits.append(100.0 * found / n)
            base = float(np.mean(random_hits))
            lo, hi = np.percentile(random_hits, [5, 95])
            print(f"{scope}: misclassified per 100 labelled (queue of {args.size})")
            print(f"  {'random (mean of ' + str(args.seeds) + ' seeds)':<34} {base:6.1f}   (5-95%: {lo:.0f}-{hi:.0f})")
            rows: list[tuple[str, dict[str, Any]]] = [
                ("least_confidence", {"strategy": "least_confidence", "diversity": False}),
                ("least_confidence + k-center", {"strategy": "least_confidence"}),
                ("margin", {"strategy": "margin", "diversity": False}),
                ("entropy", {"strategy": "entropy", "diversity": False}),
                ("entropy + k-center", {"strategy": "entropy"}),
                ("drift (far from the reference)", {"strategy": "drift", "diversity": False}),
                ("least_confidence, per_class 15", {"strategy": "least_confidence", "per_class": 15}),
            ]
            for label, params in rows:
                found, n = hits(label.split()[0], QueueSpec(size=args.size, since=since, cohort=cohort, **params))
                per100 = 100.0 * found / n
                print(f"  {label:<34} {per100:6.1f}   {per100 / base:5.2f}x random")
            found, n = hits("default", QueueSpec(size=args.size, since=since, cohort=cohort))
            print(f"  the default queue (least_confidence + k-center) finds {100.0 * found / n / base:.2f}x as many "
                  f"misclassified samples per 100 labelled as random sampling\n")
        engine.dispose()


if __name__ == "__main__":
    main()
