"""Trial runners and shared data types for the detector tests (imported by conftest and the tests).

A uniquely named module rather than ``conftest`` so that ``from ... import`` never picks up
another directory's conftest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from detectors import Detector
from testkit import digits as drift_digits

#: Trials for every no-shift false-alarm measurement (the issue's figure).
NULL_TRIALS = 200
#: Highest acceptable share of flagged no-shift windows at alpha = 0.05 over NULL_TRIALS.
MAX_FALSE_ALARM_RATE = 0.08

Pair = tuple[NDArray[np.float64], NDArray[np.float64]]
PairSampler = Callable[[np.random.Generator], Pair]


@dataclass(frozen=True)
class Digits:
    """All 1 797 digits (train + held out) as the classifier sees them, plus shifted copies."""

    model: drift_digits.DigitsModel
    images: NDArray[np.float64]
    labels: NDArray[np.int64]
    embeddings: NDArray[np.float64]
    rotated_10: NDArray[np.float64]
    probabilities: NDArray[np.float64]

    def shifted_probabilities(self, images: NDArray[np.float64]) -> NDArray[np.float64]:
        return self.model.predict_proba(images)


def disjoint_pair(reference_pool: NDArray[np.float64], current_pool: NDArray[np.float64], size: int) -> PairSampler:
    """Sampler of (reference, current) windows of ``size`` rows each, from disjoint images.

    With ``current_pool is reference_pool`` the two windows are exchangeable (no shift); with a
    transformed copy of the pool the current window shows the transform of *other* images.
    """

    def sample(rng: np.random.Generator) -> Pair:
        order = rng.permutation(len(reference_pool))
        return reference_pool[order[:size]], current_pool[order[size : 2 * size]]

    return sample


def flag_rate(make: Callable[[int], Detector], sample: PairSampler, trials: int, entropy: int) -> float:
    """Share of ``trials`` windows flagged; each trial draws fresh data and a fresh detector seed.

    Data are drawn from spawned SeedSequence streams, independent of the detectors' own streams:
    reusing one integer seed for both correlates the split with the permutations and biases rates.
    """
    flagged = 0
    for i, stream in enumerate(np.random.SeedSequence(entropy).spawn(trials)):
        reference, current = sample(np.random.default_rng(stream))
        flagged += make(i).fit(reference).score(current).is_drift
    return flagged / trials
