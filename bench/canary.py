"""Canary benchmark: labels needed to fail an accuracy regression, anytime-valid vs fixed-horizon.

Run ``.venv/bin/python bench/canary.py`` (about a minute on 2 cores; ``--runs`` to change). From
one seeded run it prints, for a baseline at 90 % accuracy and candidates 2, 3 and 5 points worse,
labels arriving one at a time for each version:

* anytime-valid: the labels per version after which cvmon's accuracy gate (the mixture SPRT of
  detectors/sequential.py, checked after every label) fails the candidate: median and 90th
  percentile over the runs, and the share of runs failed within ``--cap`` labels;
* fixed-horizon: the labels per version a classical two-proportion z-test must be planned for to
  fail the candidate with 80 % power, checked once (the Wald interval at that n, on the same data:
  its realised power is printed too);

at the gate's tolerance 0 (any regression) and at the default tolerance 0.01, and at α = 0.05 (an
accuracy-only policy) and 0.01 (accuracy's share of the default five gates). The anytime test
may be checked at every label; the fixed-horizon test is valid only at its planned n.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from detectors import sequential as seq


def labels_to_fail(base: float, drop: float, tolerance: float, alpha: float, runs: int, cap: int, seed: int) -> tuple[np.ndarray, int, float]:
    """Per run, the labels per version at the first failing check (cap + 1: not within cap);
    the fixed-horizon planned n; the fixed test's realised power at that n."""
    rng = np.random.default_rng(seed)
    planned = seq.fixed_sample_size(base, base - drop, tolerance=tolerance, alpha=alpha, power=0.8)
    horizon = max(cap, planned)
    n = np.arange(1, horizon + 1)
    first = np.full(runs, cap + 1)
    fixed_fails = 0
    for start in range(0, runs, 25):  # 25 runs at a time bounds memory
        k = min(25, runs - start)
        xa = np.cumsum(rng.random((k, horizon)) < base, axis=1)
        xb = np.cumsum(rng.random((k, horizon)) < base - drop, axis=1)
        bounds = seq.proportion_difference(xa[:, :cap], n[:cap], xb[:, :cap], n[:cap], alpha=alpha)
        fail = seq.judge(bounds, tolerance, "lower") == seq.FAIL
        fail[:, :29] = False  # the gate's min_labels (30)
        hit = fail.any(axis=1)
        first[start : start + k] = np.where(hit, fail.argmax(axis=1) + 1, cap + 1)
        fixed = seq.fixed_proportion_difference(xa[:, planned - 1], planned, xb[:, planned - 1], planned, alpha=alpha)
        fixed_fails += int((seq.judge(fixed, tolerance, "lower") == seq.FAIL).sum())
    return first, planned, fixed_fails / runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--cap", type=int, default=60_000, help="labels per version the anytime gate is followed to")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    t0 = time.perf_counter()
    print(f"baseline accuracy 0.90; labels one at a time per version; {args.runs} runs; anytime gate checked after every label\n")
    header = (f"{'regression':>10} {'tolerance':>9} {'alpha':>6} | {'anytime median':>14} {'p90':>7} {'failed':>7} | "
              f"{'fixed n (80%)':>13} {'its power':>9} | {'median / fixed':>14}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for tolerance in (0.0, 0.01):
        for alpha in (0.05, 0.01):
            for points in (2, 3, 5):
                drop = points / 100
                first, planned, power = labels_to_fail(0.90, drop, tolerance, alpha, args.runs, args.cap, args.seed + points)
                within = first <= args.cap
                median = np.median(first)
                p90 = np.percentile(first, 90)
                fmt = lambda v: f"{int(v):>7}" if v <= args.cap else f">{args.cap:>6}"  # noqa: E731
                print(f"{points:>8} pt {tolerance:>9.2f} {alpha:>6.2f} | {fmt(median):>14} {fmt(p90)} {within.mean():>6.0%} | "
                      f"{planned:>13} {power:>9.0%} | {(f'{median / planned:.2f}' if median <= args.cap else '-'):>14}")  # fmt: skip
    print(f"\n{time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
