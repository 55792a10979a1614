"""Effect-size floors: the smallest drift that matters, calibrated on the reference.

A drift test answers "does this window come from the reference's distribution?". On a few thousand
samples the answer is no for differences nobody acts on: a healthy camera with 8 % less exposure
than the fleet is statistically different every hour. A floor answers the second question, "is it
different *enough*?": a detector flags a window only when its test rejects **and** its effect size
is above the floor (:attr:`detectors.base.DriftResult.is_drift`).

The effect size is the detector's distance (MMD², a KS statistic, PSI, AUC, W1, ...; for the
chi-square test the total variation distance of the class mix, since X² grows with the window).
By default the floor is calibrated on the reference, as NannyML calibrates its alert thresholds
on reference chunks: ``pairs`` pairs of disjoint ``chunk``-row samples of the reference are
compared with each other by a copy of the detector, and the floor is the mean of those effect
sizes plus ``sigmas`` standard deviations. With ``chunk`` the smallest window that is scored, a
window must differ from the reference by more than two minimum-size samples of the reference
usually differ from each other. An effect size under no shift shrinks as the window grows, so on
small windows the floor adds little to the test, and on large ones it is a bar of practical
significance that a p-value alone never sets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

import numpy as np
from numpy.typing import ArrayLike

if TYPE_CHECKING:
    from detectors.base import Detector

#: Below this many rows a chunk says nothing about the reference: no floor is calibrated.
MIN_CHUNK: Final = 10
#: Stream of :func:`detectors.base.rng_for` the chunks are drawn from.
_FLOOR_STREAM: Final = 7


@dataclass(frozen=True)
class EffectFloor:
    """How a detector's effect-size floor is set.

    Attributes
    ----------
    min_effect
        ``"auto"``: calibrated on the reference at fit; a number: that floor; ``None``: no floor
        (the test alone decides).
    chunk
        Rows of each reference sample compared (at most half the reference): the smallest window
        the detector will score.
    pairs
        Pairs of reference samples compared.
    sigmas
        The floor is the mean of their effect sizes plus this many standard deviations.
    """

    min_effect: float | Literal["auto"] | None = "auto"
    chunk: int = 100
    pairs: int = 20
    sigmas: float = 3.0

    def __post_init__(self) -> None:
        value = self.min_effect
        fixed = value is not None and value != "auto"
        if fixed and (isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0):
            raise ValueError(f"min_effect must be 'auto', None or a number >= 0, got {value!r}")
        if self.chunk < MIN_CHUNK:
            raise ValueError(f"chunk must be at least {MIN_CHUNK} rows, got {self.chunk}")
        if self.pairs < 2:
            raise ValueError(f"pairs must be at least 2, got {self.pairs}")
        if not self.sigmas >= 0:
            raise ValueError(f"sigmas must be >= 0, got {self.sigmas}")

    def to_dict(self) -> dict[str, Any]:
        return {"min_effect": self.min_effect, "chunk": self.chunk, "pairs": self.pairs, "sigmas": self.sigmas}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EffectFloor:
        return cls(**data)


@dataclass(frozen=True)
class FloorCalibration:
    """What a calibration measured: the floor, and the reference-vs-reference effect sizes behind it."""

    floor: float | None
    chunk: int
    #: Effect sizes of the pairs of reference samples that could be scored.
    effects: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.effects)) if self.effects else float("nan")

    @property
    def sd(self) -> float:
        return float(np.std(self.effects, ddof=1)) if len(self.effects) > 1 else float("nan")


def calibrate(detector: Detector, reference: ArrayLike, spec: EffectFloor) -> FloorCalibration:
    """The floor of ``detector`` for ``reference`` (rows: samples) under ``spec``.

    Each pair is two disjoint uniform samples of ``min(spec.chunk, n // 2)`` rows; a fresh copy of
    the detector (same options, no floor) is fitted on one and scores the other. Pairs that cannot
    be scored (a sample without variance, say) are left out; with fewer than two left there is no
    floor. A fixed ``min_effect`` is returned as it is, and ``None`` gives no floor.
    """
    from detectors.base import rng_for

    if spec.min_effect is None:
        return FloorCalibration(None, 0, ())
    if spec.min_effect != "auto":
        return FloorCalibration(float(spec.min_effect), 0, ())
    rows = np.asarray(reference)
    size = min(spec.chunk, len(rows) // 2)
    if size < MIN_CHUNK:
        return FloorCalibration(None, size, ())
    rng = rng_for(detector.seed, _FLOOR_STREAM)
    effects: list[float] = []
    for _ in range(spec.pairs):
        order = rng.permutation(len(rows))
        twin = type(detector)(**detector.params())
        try:
            effects.append(twin.fit(rows[order[:size]]).score(rows[order[size : 2 * size]]).effect_size)
        except ValueError:  # e.g. a sample with a single value: nothing to compare
            continue
    if len(effects) < 2:
        return FloorCalibration(None, size, tuple(effects))
    floor = float(np.mean(effects) + spec.sigmas * np.std(effects, ddof=1))
    return FloorCalibration(floor, size, tuple(effects))
