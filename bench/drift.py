"""Drift-detector benchmark: cvmon's detectors against Evidently's embedding-drift methods.

Run ``.venv/bin/python bench/drift.py`` (a few minutes on 2 cores) or ``--quick`` (well under a
minute). It prints, from one run on the same seeded data:

1. time per detector on a 5 000 × 512 reference against a 5 000 × 512 window (1-D scores and
   class mix on 5 000 values), next to each Evidently embedding method, with ratios;
2. the false-alarm rate under no shift over ``--trials`` windows (digits embeddings);
3. power on real shifts of the digits images (10° and 5° rotation, blur; rotation for 1-D and class mix);
   2 and 3 also with the effect-size floor the drift job gives every detector (``EffectFloor(chunk=100)``,
   calibrated on each trial's reference; cvmon's detectors), and on a shift that should *not* be
   flagged: images 8 % darker (the demo's healthy cam-2), where the floor keeps the flag rate down;
4. the label-free accuracy estimate against realised accuracy on digits under covariate shifts
   and under concept shift (swapped labels).

Times are the best of ``--repeat`` runs. The fit (summarising the reference) is timed apart from
scoring a window, since the service fits once per reference and scores every hour.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import (
    ChiSquareDrift,
    ClassifierDrift,
    Detector,
    EffectFloor,
    EvidentlyEmbeddingDrift,
    JensenShannonDrift,
    KSDrift,
    LabelFreeAccuracy,
    MMDDrift,
    PCAKSDrift,
    PSIDrift,
    WassersteinDrift,
)
from testkit import digits as drift_digits


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[int], Detector]
    data: str  # "embeddings", "scores" or "classes"
    evidently: bool = False


CVMON = [
    Case("MMDDrift (RFF, 100 perms)", lambda s: MMDDrift(seed=s), "embeddings"),
    Case("ClassifierDrift (100 perms)", lambda s: ClassifierDrift(seed=s), "embeddings"),
    Case("PCAKSDrift (10 comps)", lambda s: PCAKSDrift(seed=s), "embeddings"),
    Case("KSDrift (confidence)", lambda s: KSDrift(seed=s), "scores"),
    Case("WassersteinDrift (200 perms)", lambda s: WassersteinDrift(seed=s), "scores"),
    Case("PSIDrift (10 bins)", lambda s: PSIDrift(seed=s), "scores"),
    Case("JensenShannonDrift (class mix)", lambda s: JensenShannonDrift(seed=s), "classes"),
    Case("ChiSquareDrift (class mix)", lambda s: ChiSquareDrift(seed=s), "classes"),
    Case("PSIDrift (class mix)", lambda s: PSIDrift(seed=s), "classes"),
]
EVIDENTLY = [
    Case("evidently mmd (no p-value)", lambda s: EvidentlyEmbeddingDrift("mmd", seed=s, bootstrap=False), "embeddings", True),
    Case("evidently mmd + bootstrap", lambda s: EvidentlyEmbeddingDrift("mmd", seed=s), "embeddings", True),
    Case("evidently model + bootstrap", lambda s: EvidentlyEmbeddingDrift("model", seed=s), "embeddings", True),
    Case("evidently distance + bootstrap", lambda s: EvidentlyEmbeddingDrift("distance", seed=s), "embeddings", True),
    Case("evidently ratio", lambda s: EvidentlyEmbeddingDrift("ratio", seed=s), "embeddings", True),
]
#: cvmon detector -> the Evidently method it is compared with in the timing table.
COUNTERPART = {
    "MMDDrift (RFF, 100 perms)": "evidently mmd + bootstrap",
    "ClassifierDrift (100 perms)": "evidently model + bootstrap",
    "PCAKSDrift (10 comps)": "evidently ratio",
}


def embedding_like(rng: np.random.Generator, n: int, d: int, mixing: np.ndarray) -> np.ndarray:
    """Correlated, non-negative vectors like ReLU embeddings: a 64-factor mix plus noise."""
    return np.maximum(rng.standard_normal((n, mixing.shape[0])) @ mixing + 0.3 * rng.standard_normal((n, d)), 0.0)


def timing_data(n: int, d: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((64, d)) / 8.0
    return {
        "embeddings": (embedding_like(rng, n, d, mixing), embedding_like(rng, n, d, mixing)),
        "scores": (rng.beta(8, 2, n), rng.beta(8, 2, n)),
        "classes": (rng.integers(0, 10, n), rng.integers(0, 10, n)),
    }


def best_of(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def run_timing(n: int, d: int, repeat: int, seed: int) -> None:
    data = timing_data(n, d, seed)
    print(f"\n## Time per window: {n} × {d} reference vs {n} × {d} current (1-D and class mix: {n} values)")
    print(f"best of {repeat}; fit = summarise the reference once, score = one window\n")
    rows: dict[str, tuple[float, float]] = {}
    for case in CVMON + EVIDENTLY:
        reference, current = data[case.data]
        detector = case.make(0)
        fit = best_of(lambda case=case, reference=reference: case.make(0).fit(reference), 1 if case.evidently else repeat)
        detector.fit(reference)
        detector.score(current)  # warm-up: lazy imports (scipy, sklearn, evidently) are not the detector's cost
        score = best_of(lambda detector=detector, current=current: detector.score(current), 1 if case.evidently else repeat)
        rows[case.name] = (fit, score)
    print(f"| {'detector':34s} | {'fit s':>7s} | {'score s':>8s} | {'Evidently counterpart':30s} | {'its s':>7s} | {'speed-up':>8s} |")
    print(f"|{'-' * 36}|{'-' * 9}|{'-' * 10}|{'-' * 32}|{'-' * 9}|{'-' * 10}|")
    for case in CVMON + EVIDENTLY:
        fit, score = rows[case.name]
        other = COUNTERPART.get(case.name)
        other_s = rows[other][1] if other else None
        print(
            f"| {case.name:34s} | {fit:7.3f} | {score:8.3f} | {other or '':30s} | "
            f"{'' if other_s is None else f'{other_s:7.2f}':>7s} | {'' if other_s is None else f'{other_s / score:7.0f}x':>8s} |"
        )
    total = sum(rows[c.name][1] for c in CVMON)
    print(f"\nall cvmon detectors on one window (scores only): {total:.2f} s")


def flag_rate(
    case: Case,
    sampler: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
    trials: int,
    entropy: int,
    floor: EffectFloor | None = None,
) -> float:
    flagged = 0
    for i, stream in enumerate(np.random.SeedSequence(entropy).spawn(trials)):
        reference, current = sampler(np.random.default_rng(stream))
        detector = case.make(i)
        detector.effect_floor = floor  # the same detector, decided with the drift job's floor
        flagged += detector.fit(reference).score(current).is_drift
    return flagged / trials


#: The floor the drift job gives each detector: calibrated on the reference, from pairs of samples
#: of drift_min_samples (100) rows.
JOB_FLOOR = EffectFloor(chunk=100)


def disjoint(pool: np.ndarray, shifted: np.ndarray, size: int) -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]:
    def sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        order = rng.permutation(len(pool))
        return pool[order[:size]], shifted[order[size : 2 * size]]

    return sample


def run_rates(trials: int, power_trials: int, quick: bool, floor: EffectFloor | None = None) -> None:
    from threadpoolctl import threadpool_limits

    model = drift_digits.train_digits_model()
    images = np.concatenate([model.images, model.train_images])
    emb = model.embed(images)
    probs = model.predict_proba(images)
    conf, classes = probs.max(axis=1), probs.argmax(axis=1)
    shifts = {
        "rotation 10°": model.embed(drift_digits.rotate(images, 10.0)),
        "rotation 5°": model.embed(drift_digits.rotate(images, 5.0)),
        "blur σ=0.5": model.embed(drift_digits.blur(images, 0.5)),
        "8 % darker": model.embed(drift_digits.brighten(images, 0.92)),
    }
    rotated = model.predict_proba(drift_digits.rotate(images, 10.0))
    darker = model.predict_proba(drift_digits.brighten(images, 0.92))
    size, evidently_size = (300, 150) if quick else (500, 200)
    which = "without a floor (the test alone)" if floor is None else f"with the drift job's floor ({floor})"
    print(f"\n## False-alarm rate under no shift at alpha = 0.05 ({trials} trials) and flag rates, {which}")
    print(
        f"digits: disjoint windows of {size} per side (Evidently embeddings: {evidently_size}) drawn from one pool of "
        f"{len(images)} images,\nso trials share images and the rate varies more between runs than a binomial would; "
        "Gaussian: independent\nwindows of the same size (N(0, I) × 64 for embeddings, N(0, 1) scores, 10 uniform classes)\n"
    )
    pools = {"embeddings": emb, "scores": conf, "classes": classes}
    shifted_pools = {"scores": rotated.max(axis=1), "classes": rotated.argmax(axis=1)}
    darker_pools = {"scores": darker.max(axis=1), "classes": darker.argmax(axis=1)}
    gaussian = {
        "embeddings": lambda rng, n: rng.standard_normal((n, emb.shape[1])),
        "scores": lambda rng, n: rng.standard_normal(n),
        "classes": lambda rng, n: rng.integers(0, 10, n),
    }
    title = "flag rate (digits): " + " / ".join(shifts)
    print(f"| {'detector':34s} | {'FA digits':>9s} | {'FA Gaussian':>11s} | {title:>64s} |")
    print(f"|{'-' * 36}|{'-' * 11}|{'-' * 13}|{'-' * 66}|")
    # Small windows: one BLAS thread is faster than two fighting over a shared 2-core machine.
    with threadpool_limits(limits=1, user_api="blas"):
        # with a floor: cvmon's detectors only (Evidently's spend ~0.2 s a window on their own
        # bootstrap, times the 20 pairs of each calibration)
        for case in CVMON + (EVIDENTLY if floor is None else []):
            n = evidently_size if case.evidently else size
            pool = pools[case.data]
            null = flag_rate(case, disjoint(pool, pool, n), trials, 2026, floor)
            draw = gaussian[case.data]
            independent = flag_rate(case, lambda rng, draw=draw, n=n: (draw(rng, n), draw(rng, n)), trials, 2027, floor)
            if case.data == "embeddings":
                power = [flag_rate(case, disjoint(emb, s, n), power_trials, 7, floor) for s in shifts.values()]
                text = " / ".join(f"{p:.0%}" for p in power)
            else:
                rot = flag_rate(case, disjoint(pool, shifted_pools[case.data], n), power_trials, 7, floor)
                dark = flag_rate(case, disjoint(pool, darker_pools[case.data], n), power_trials, 7, floor)
                text = f"rotation 10°: {rot:.0%} / 8 % darker: {dark:.0%}"
            print(f"| {case.name:34s} | {null:9.1%} | {independent:11.1%} | {text:>64s} |")


def run_estimate() -> None:
    model = drift_digits.train_digits_model()
    order = np.random.default_rng(0).permutation(len(model.images))
    ref, cur = order[: len(order) // 2], order[len(order) // 2 :]
    probs = model.predict_proba(model.images)
    rng = np.random.default_rng(1)
    labels = model.labels
    swapped = labels.copy()
    swapped[labels == 3], swapped[labels == 8] = 8, 3
    windows: Sequence[tuple[str, str, np.ndarray, np.ndarray]] = [
        ("covariate", "no shift", probs[cur], labels[cur]),
        ("covariate", "blur σ=0.5", model.predict_proba(drift_digits.blur(model.images[cur], 0.5)), labels[cur]),
        ("covariate", "blur σ=0.8", model.predict_proba(drift_digits.blur(model.images[cur], 0.8)), labels[cur]),
        ("covariate", "noise σ=2", model.predict_proba(drift_digits.add_noise(model.images[cur], 2.0, rng)), labels[cur]),
        ("covariate", "brightness ×1.3", model.predict_proba(drift_digits.brighten(model.images[cur], 1.3)), labels[cur]),
        ("far from reference", "rotation 10°", model.predict_proba(drift_digits.rotate(model.images[cur], 10.0)), labels[cur]),
        ("concept", "labels 3 <-> 8 swapped", probs[cur], swapped[cur]),
    ]
    print(f"\n## Label-free accuracy estimate vs realised (digits; calibrated on {len(ref)} labelled, windows of {len(cur)})\n")
    print(f"| {'shift':18s} | {'window':24s} | {'realised':>8s} | {'temperature':>11s} | {'isotonic':>8s} |")
    print(f"|{'-' * 20}|{'-' * 26}|{'-' * 10}|{'-' * 13}|{'-' * 10}|")
    estimators = [LabelFreeAccuracy(calibration=c).fit(probs[ref], labels[ref]) for c in ("temperature", "isotonic")]  # type: ignore[arg-type]
    for kind, name, p, y in windows:
        realised = float((p.argmax(axis=1) == y).mean())
        errors = [100 * (e.estimate(p).accuracy - realised) for e in estimators]
        print(f"| {kind:18s} | {name:24s} | {realised:8.1%} | {errors[0]:+9.1f} pt | {errors[1]:+6.1f} pt |")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller windows and fewer trials (under a minute)")
    parser.add_argument("--n", type=int, default=5000, help="rows per window in the timing section")
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension in the timing section")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats (best is reported)")
    parser.add_argument("--trials", type=int, default=None, help="no-shift trials (default 200, --quick 50)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", choices=["timing", "rates", "estimate"], help="run one section")
    parser.add_argument("--no-floor-rates", action="store_true", help="skip the rates with the drift job's floor")
    args = parser.parse_args(argv)
    trials = args.trials or (50 if args.quick else 200)
    power_trials = 20 if args.quick else 50
    n, dim = (1000, 128) if args.quick and args.n == 5000 and args.dim == 512 else (args.n, args.dim)
    # Evidently's own deprecation warnings are not ours to report here.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    print(f"# cvmon drift benchmark (numpy {np.__version__})")
    if args.only in (None, "timing"):
        run_timing(n, dim, args.repeat, args.seed)
    if args.only in (None, "rates"):
        run_rates(trials, power_trials, args.quick)
        if not args.no_floor_rates:
            run_rates(trials, power_trials, args.quick, JOB_FLOOR)
    if args.only in (None, "estimate"):
        run_estimate()


if __name__ == "__main__":
    main()
