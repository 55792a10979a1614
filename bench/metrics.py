"""Benchmark of monitor.metrics against the reference tools, on the same data in the same run.

COCO: seeded COCO-like ground truth and detections (5 000 images, 80 classes, ~7 objects and up
to 100 detections per image, COCO's small / medium / large mix), written as json files; each
tool goes from the files to the 12 summary numbers: cvmon (the path of ``cvmon eval coco``),
faster-coco-eval (C++ core) and pycocotools.

Classification: 10⁶ × 1 000 float32 softmax probabilities. ECE (15 bins) with cvmon, torchmetrics
and netcal; accuracy, per-class P/R/F1, confusion matrix and top-5 with cvmon and scikit-learn.

numba compiles the kernels on first use and caches them on disk; the compile (cold, empty cache),
the cache load (a fresh process) and the warm times are reported separately, and every timed
run below is warm. Timings are the best of ``--repeat`` runs (pycocotools: one run).

COCO also runs as a user runs it, one process from the files to the printed numbers: ``cvmon eval
coco`` with an empty numba cache (cold: it compiles), on the first call after the background
warm-up ``make run`` / ``cvmon db upgrade`` start (``python -m monitor.server.cli._warm``, run
to its end first) and cached, beside faster-coco-eval's whole process on the same files.

    .venv/bin/python bench/metrics.py            # the full benchmark (~4 minutes, ~14 GB RAM)
    .venv/bin/python bench/metrics.py --quick    # small sizes, a smoke test (~20 s)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from testkit.synth import CocoOptions, coco_like

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (500 images, 20 000 x 200 probabilities)")
    parser.add_argument("--images", type=int, help="COCO images (default 5000)")
    parser.add_argument("--rows", type=int, help="classification rows (default 1 000 000)")
    parser.add_argument("--classes", type=int, help="classification classes (default 1 000)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per tool; the best counts (default 3)")
    parser.add_argument("--skip", action="append", default=[], choices=["pycocotools", "coco", "classification", "warmup"],
                        help="leave a part out (repeatable)")  # fmt: skip
    args = parser.parse_args()
    images = args.images or (500 if args.quick else 5000)
    rows = args.rows or (20_000 if args.quick else 1_000_000)
    classes = args.classes or (200 if args.quick else 1000)
    warnings.simplefilter("ignore")  # the oracles' deprecation chatter is not what we measure

    print(f"monitor.metrics benchmark: python {sys.version.split()[0]}, numpy {np.__version__}, {os.cpu_count()} CPUs")
    if "warmup" not in args.skip:
        warmup()
    if "coco" not in args.skip:
        coco(images, args.repeat, with_pycocotools="pycocotools" not in args.skip)
    if "classification" not in args.skip:
        classification(rows, classes, args.repeat)


# --------------------------------------------------------------------------------------------
# helpers


def best_of(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def peak_memory(fn: Callable[[], Any]) -> int:
    """Peak bytes allocated (Python and numpy) while ``fn`` runs, inputs excluded."""
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def header(title: str, base: str = "cvmon") -> None:
    print(f"  {title:<52} {'time':>10}  {'÷ ' + base:>8}")


def row(name: str, seconds: float, base: float | None = None, note: str = "") -> None:
    ratio = f"{seconds / base:7.2f}x" if base else " " * 8
    print(f"  {name:<52} {seconds:8.3f} s  {ratio}  {note}")


# --------------------------------------------------------------------------------------------
# warm-up: compile, cache load, warm


_FIRST_CALLS = """
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from testkit.synth import CocoOptions, classification_like, coco_like
from monitor.metrics import coco_input, detection_metrics, probability_states, calibration_state
gt, dt = coco_like(0, CocoOptions(n_images=5, n_classes=3))
labels, probs = classification_like(0, 50, 4)
data = coco_input(gt, dt)
t1 = time.perf_counter()
detection_metrics(data.detection_state())
probability_states(labels, probs, classwise=True)
calibration_state(labels, probs.astype(np.float64))
t2 = time.perf_counter()
detection_metrics(data.detection_state())
probability_states(labels, probs, classwise=True)
calibration_state(labels, probs.astype(np.float64))
t3 = time.perf_counter()
print(json.dumps({{"first": t2 - t1, "again": t3 - t2}}))
"""


def warmup() -> None:
    print("\nnumba kernels (all of them, on tiny inputs; a fresh process each)")
    code = _FIRST_CALLS.format(root=str(ROOT))
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        runs = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            runs.append(json.loads(out.stdout))
    row("cold: compile (empty cache), incl. numba import", runs[0]["first"])
    row("cached: load from the disk cache, incl. import", runs[1]["first"])
    row("warm: second call in the same process", runs[1]["again"])


# --------------------------------------------------------------------------------------------
# COCO


def coco(images: int, repeat: int, *, with_pycocotools: bool) -> None:
    print(f"\nCOCO bbox: {images} images, 80 classes (generating...)", flush=True)
    gt, dt = coco_like(2024, CocoOptions(n_images=images, n_classes=80))
    print(f"  {len(gt['annotations'])} ground-truth boxes, {len(dt)} detections")
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = Path(tmp) / "gt.json", Path(tmp) / "dt.json"
        gt_path.write_text(json.dumps(gt))
        dt_path.write_text(json.dumps(dt))
        del gt, dt

        def ours() -> list[float]:
            from monitor.metrics import DetectionState, coco_input, detection_metrics
            from monitor.server.cli.eval import _IMAGES_PER_CHUNK, _read_json

            data = coco_input(_read_json(gt_path, "ground truth"), _read_json(dt_path, "detections"))
            state = DetectionState.merge(*(data.detection_state(a, b) for a, b in data.chunks(_IMAGES_PER_CHUNK)))
            m = detection_metrics(state)
            return [-1.0 if v is None else v for v in m.summary().values()]

        def faster() -> list[float]:
            from faster_coco_eval import COCO, COCOeval_faster

            with contextlib.redirect_stdout(io.StringIO()):
                g = COCO(str(gt_path))
                d = g.loadRes(str(dt_path))
                e = COCOeval_faster(g, d, "bbox", print_function=lambda *a, **k: None)
                e.evaluate()
                e.accumulate()
                e.summarize()
            return list(e.stats)

        def reference() -> list[float]:
            from pycocotools.coco import COCO
            from pycocotools.cocoeval import COCOeval

            with contextlib.redirect_stdout(io.StringIO()):
                g = COCO(str(gt_path))
                d = g.loadRes(str(dt_path))
                e = COCOeval(g, d, "bbox")
                e.evaluate()
                e.accumulate()
                e.summarize()
            return list(e.stats)

        cold_start = time.perf_counter()
        ours()
        first = time.perf_counter() - cold_start
        t_ours, s_ours = best_of(ours, repeat)
        t_fast, s_fast = best_of(faster, repeat)
        header("files -> 12 summary numbers")
        row(f"cvmon (warm; first call in process: {first:.2f} s)", t_ours, t_ours)
        row(
            "faster-coco-eval",
            t_fast,
            t_ours,
            f"max |diff| {np.max(np.abs(np.subtract(s_ours, s_fast))):.1e}",
        )
        if with_pycocotools:
            t_ref, s_ref = best_of(reference, 1)
            row("pycocotools", t_ref, t_ours, f"max |diff| {np.max(np.abs(np.subtract(s_ours, s_ref))):.1e}")
        peak = peak_memory(ours)
        print(f"  cvmon peak memory (tracemalloc): {peak / 2**20:.0f} MiB; "
              f"faster-coco-eval / cvmon = {t_fast / t_ours:.2f}")  # fmt: skip
        whole_process(gt_path, dt_path, repeat)


_FASTER_PROCESS = """
import contextlib, io, sys
from faster_coco_eval import COCO, COCOeval_faster
with contextlib.redirect_stdout(io.StringIO()):
    g = COCO(sys.argv[1])
    d = g.loadRes(sys.argv[2])
    e = COCOeval_faster(g, d, "bbox", print_function=lambda *a, **k: None)
    e.evaluate()
    e.accumulate()
    e.summarize()
print(list(e.stats))
"""


def _process_seconds(args: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:5])} ... failed:\n{proc.stderr}")
    return seconds


def whole_process(gt_path: Path, dt_path: Path, repeat: int) -> None:
    """Fresh processes, files to printed numbers: cvmon cold, right after the warm-up, cached."""
    cvmon = [sys.executable, "-m", "monitor.server.cli", "eval", "coco", "--gt", str(gt_path), "--dt", str(dt_path)]
    faster = [sys.executable, "-c", _FASTER_PROCESS, str(gt_path), str(dt_path)]
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "numba"
        env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
        cold = _process_seconds(cvmon, env)
        shutil.rmtree(cache)
        warm_up = _process_seconds([sys.executable, "-m", "monitor.server.cli._warm"], env)
        first = _process_seconds(cvmon, env)
        cached = min(_process_seconds(cvmon, env) for _ in range(repeat))
    t_faster = min(_process_seconds(faster, env) for _ in range(repeat))
    print("\n  whole process (a fresh interpreter, files to printed numbers)")
    header("files -> printed numbers", "faster")
    row("faster-coco-eval (python -c)", t_faster, t_faster)
    row("cvmon eval coco, cold (empty numba cache)", cold, t_faster)
    row(f"cvmon eval coco, first after the warm-up ({warm_up:.1f} s)", first, t_faster)
    row("cvmon eval coco, cached", cached, t_faster)


# --------------------------------------------------------------------------------------------
# classification and calibration


def softmax_rows(seed: int, n: int, c: int, chunk: int = 50_000) -> tuple[np.ndarray, np.ndarray]:
    """An over-confident classifier's float32 softmax, generated in chunks (no float64 N × C copy)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, c, size=n)
    probs = np.empty((n, c), dtype=np.float32)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        x = rng.standard_normal((stop - start, c), dtype=np.float32)
        x[np.arange(stop - start), labels[start:stop]] += rng.gamma(2.0, 1.5, size=stop - start).astype(np.float32)
        x *= np.float32(1.8)
        x -= x.max(axis=1, keepdims=True)
        np.exp(x, out=x)
        x /= x.sum(axis=1, keepdims=True)
        probs[start:stop] = x
    return labels, probs


def classification(n: int, c: int, repeat: int) -> None:
    print(
        f"\nclassification: {n} x {c} float32 probabilities ({n * c * 4 / 2**30:.1f} GiB; generating...)",
        flush=True,
    )
    labels, probs = softmax_rows(7, n, c)
    import torch
    from netcal.metrics import ECE
    from torchmetrics.functional.classification import multiclass_calibration_error

    from monitor.metrics import (
        calibration_metrics,
        calibration_state,
        classification_metrics,
        classification_state,
        probability_states,
    )

    def ours_ece() -> float:
        return calibration_metrics(calibration_state(labels, probs, brier=False)).ece  # type: ignore[return-value]

    def torch_ece() -> float:
        return float(
            multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(labels), num_classes=c, n_bins=15)
        )

    def netcal_ece() -> float:
        return float(ECE(bins=15).measure(probs, labels))

    ours_ece()
    t_ours, e_ours = best_of(ours_ece, repeat)
    t_torch, e_torch = best_of(torch_ece, repeat)
    t_netcal, e_netcal = best_of(netcal_ece, max(1, repeat - 1))
    header("ECE, 15 bins (top-label)")
    row("cvmon (+ MCE, adaptive ECE, reliability)", t_ours, t_ours, f"ECE {e_ours:.6f}")
    row(
        "torchmetrics MulticlassCalibrationError",
        t_torch,
        t_ours,
        f"|diff| {abs(e_ours - e_torch):.1e} (float32 sums)",
    )
    row("netcal ECE", t_netcal, t_ours, f"|diff| {abs(e_ours - e_netcal):.1e}")
    peak = peak_memory(ours_ece)
    print(f"  cvmon peak memory (tracemalloc): {peak / 2**20:.0f} MiB beside the {probs.nbytes / 2**30:.1f} GiB input")

    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    def ours_cls() -> Any:
        return classification_metrics(classification_state(labels, probs), top_k=(1, 5))

    def sklearn_cls() -> Any:
        pred = probs.argmax(axis=1)
        return (accuracy_score(labels, pred), precision_recall_fscore_support(labels, pred, labels=np.arange(c), zero_division=np.nan),
                confusion_matrix(labels, pred, labels=np.arange(c)))  # fmt: skip

    sub = min(n, 100_000)

    def sklearn_top5() -> float:
        return float(top_k_accuracy_score(labels[:sub], probs[:sub], k=5, labels=np.arange(c)))

    t_cls, m = best_of(ours_cls, repeat)
    t_skl, _ = best_of(sklearn_cls, repeat)
    t_top5, top5_sub = best_of(sklearn_top5, 1)
    header("classification metrics")
    row("cvmon (argmax, P/R/F1, confusion, top-1/5)", t_cls, t_cls)
    row("scikit-learn (argmax, P/R/F1, confusion)", t_skl, t_cls)
    note = f"all {n} rows: ~{t_top5 * n / sub:.0f} s (linear)" if sub < n else ""
    row(f"scikit-learn top_k_accuracy_score, {sub} rows", t_top5, t_cls, note)

    probability_states(labels[:10], probs[:10], classwise=True)
    t_all, _ = best_of(lambda: probability_states(labels, probs, classwise=True), 1)
    row("cvmon everything, one pass (+ classwise, Brier)", t_all, t_cls)
    print(f"  top-5 on the first {sub} rows: cvmon/sklearn agree: "
          f"{classification_metrics(classification_state(labels[:sub], probs[:sub])).top_k_accuracy[5] == top5_sub}")  # fmt: skip
    print(f"  ECE ratio torchmetrics / cvmon = {t_torch / t_ours:.1f}, netcal / cvmon = {t_netcal / t_ours:.1f}; "
          f"accuracy {m.accuracy:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
