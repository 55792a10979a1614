"""The drift-detector interface, its result and the reference-summary encoding.

Every detector follows one shape::

    detector = MMDDrift(alpha=0.05, seed=0).fit(reference)   # learn the reference once
    result = detector.score(current)                          # DriftResult; never changes the detector
    stored = detector.to_dict()                               # JSON-safe: store it, reload it with
    same = detectors.from_dict(stored)                        # detectors.from_dict / from_bytes

``floor=EffectFloor()`` adds an effect-size floor calibrated on the reference at fit
(:mod:`detectors.floor`): the window is flagged only when the test rejects and the effect is above
it. Without one (the default) the test alone decides, at its stated false-alarm rate.

``to_dict()`` holds the constructor options and a compact *reference summary*: bins fixed at fit
time, a bounded uniform sample of the reference (a reservoir) for multivariate methods, never the
whole reference window. Arrays inside are little-endian bytes in base64 (the wire format's
``{"base64", "dtype"}`` plus a ``shape``), so a summary is plain JSON and never needs pickle.
"""

from __future__ import annotations

import abc
import base64
import binascii
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, ClassVar, Final, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray

from detectors.floor import EffectFloor, calibrate
from monitor.errors import CvmonError

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
#: Values a result's ``details`` may hold: plain JSON scalars or flat lists of them.
Detail = float | int | str | bool | None | list[float] | list[int] | list[str]

#: Version of the ``to_dict()`` layout; bumped when a summary changes shape.
SUMMARY_FORMAT: Final = 1

_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "float32": np.dtype("<f4"),
    "float64": np.dtype("<f8"),
    "int64": np.dtype("<i8"),
}


class NotFittedError(CvmonError, RuntimeError):
    """``score`` or ``to_dict`` was called before ``fit``."""


class SummaryError(CvmonError, ValueError):
    """A stored reference summary cannot be loaded (wrong method, format or shape)."""


@dataclass(frozen=True)
class DriftResult:
    """The outcome of scoring one current window against the reference.

    Attributes
    ----------
    method
        Detector name, e.g. ``"mmd"``; the ``detector`` label of the exported metric.
    score
        The test statistic or distance (MMD², AUC, PSI, ...); larger means more different.
    p_value
        p-value of the test, or ``None`` for distances without one (PSI, Jensen–Shannon, Evidently).
    threshold
        What ``significant`` was decided against: ``alpha`` for a p-value (significant when
        ``p_value <= alpha``), otherwise the score threshold (when ``score > threshold``).
        ``None`` only where a wrapped tool decides without exposing its threshold.
    significant
        Whether the test rejects "no shift" at its level: statistically, the window differs.
    effect_size
        How much it differs, on a scale that does not grow with the window: the score for most
        detectors, the total variation distance of the class mix for chi-square.
    n_reference, n_current
        Number of samples actually compared (after any bounded sampling).
    details
        Method-specific JSON-safe extras (bandwidth, per-component p-values, ...), read-only.
    floor
        The smallest effect size that matters (:mod:`detectors.floor`); ``None``: no floor.
    """

    method: str
    score: float
    p_value: float | None
    threshold: float | None
    significant: bool
    effect_size: float
    n_reference: int
    n_current: int
    details: Mapping[str, Detail] = field(default_factory=dict)
    floor: float | None = None

    def __post_init__(self) -> None:
        # A frozen dataclass may still hold a mutable dict; wrap it so a result cannot be edited.
        object.__setattr__(self, "details", MappingProxyType(dict(self.details)))

    @property
    def is_drift(self) -> bool:
        """Whether the window is flagged: the test rejects and the effect is above the floor."""
        return self.significant and (self.floor is None or self.effect_size > self.floor)

    def with_floor(self, floor: float | None) -> DriftResult:
        """The same result decided against another floor (e.g. one set per model)."""
        return replace(self, floor=floor)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, e.g. for a database row or an API response."""
        return {
            "method": self.method,
            "score": self.score,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "significant": self.significant,
            "effect_size": self.effect_size,
            "floor": self.floor,
            "is_drift": self.is_drift,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "details": dict(self.details),
        }


class Detector(abc.ABC):
    """Base class of every drift detector.

    Parameters
    ----------
    alpha
        False-alarm rate the detector is built to hold under no shift (test level).
    seed
        Seed of every random choice (subsampling, permutations, resampling). Scoring the same
        window twice gives the same result.
    floor
        The effect-size floor (:class:`~detectors.floor.EffectFloor`): calibrated on the reference
        at fit (``EffectFloor()``), fixed, or ``None`` (the default: the test alone decides).
    """

    #: Short name, used as ``DriftResult.method`` and as the key in a stored summary.
    method: ClassVar[str]

    def __init__(self, *, alpha: float = 0.05, seed: int = 0, floor: EffectFloor | None = None) -> None:
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if int(seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed}")
        self.alpha = float(alpha)
        self.seed = int(seed)
        self.effect_floor = floor
        self._floor: float | None = None

    # -- the interface ---------------------------------------------------------------------

    def fit(self, reference: ArrayLike) -> Self:
        """Summarise ``reference``, calibrate the effect-size floor on it, and return ``self``."""
        self._fit(reference)
        self._floor = None if self.effect_floor is None else calibrate(self, reference, self.effect_floor).floor
        return self

    def score(self, current: ArrayLike) -> DriftResult:
        """Compare ``current`` with the fitted reference. Never changes the detector."""
        self._check_fitted()
        return self._score(current).with_floor(self._floor)

    @property
    def floor(self) -> float | None:
        """The effect-size floor in force (fitted or loaded), or None."""
        return self._floor

    @abc.abstractmethod
    def _fit(self, reference: ArrayLike) -> Self:
        """Summarise ``reference`` and return ``self``."""

    @abc.abstractmethod
    def _score(self, current: ArrayLike) -> DriftResult:
        """The test of ``current`` against the fitted reference, without a floor."""

    @property
    @abc.abstractmethod
    def is_fitted(self) -> bool:
        """Whether ``fit`` (or ``from_dict``) has given the detector a reference."""

    # -- serialisation ---------------------------------------------------------------------

    @abc.abstractmethod
    def params(self) -> dict[str, Any]:
        """Constructor options as JSON-safe values; ``type(self)(**params())`` rebuilds it unfitted."""

    @abc.abstractmethod
    def _summary(self) -> dict[str, Any]:
        """The fitted reference as JSON-safe values (arrays through :func:`encode_array`)."""

    @abc.abstractmethod
    def _load_summary(self, summary: Mapping[str, Any]) -> None:
        """Restore the state written by :meth:`_summary`."""

    def to_dict(self) -> dict[str, Any]:
        """The fitted detector as a JSON-safe dict: ``format``, ``method``, ``params``, ``reference``,
        and ``floor`` (its settings and the fitted value) when it has one."""
        self._check_fitted()
        out = {
            "format": SUMMARY_FORMAT,
            "method": self.method,
            "params": self.params(),
            "reference": self._summary(),
        }
        if self.effect_floor is not None:
            out["floor"] = {"spec": self.effect_floor.to_dict(), "value": self._floor}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a fitted detector of this class from :meth:`to_dict` output."""
        if data.get("format") != SUMMARY_FORMAT:
            raise SummaryError(f"unsupported summary format {data.get('format')!r}; expected {SUMMARY_FORMAT}")
        if data.get("method") != cls.method:
            raise SummaryError(f"summary is for method {data.get('method')!r}, not {cls.method!r}")
        try:
            floor = data.get("floor")  # absent from summaries stored before floors: none
            detector = cls(**data["params"], floor=None if floor is None else EffectFloor.from_dict(floor["spec"]))
            detector._load_summary(data["reference"])
            if floor is not None:
                value = floor["value"]
                detector._floor = None if value is None else float(value)
        except (KeyError, TypeError, ValueError) as exc:
            raise SummaryError(f"{cls.method}: invalid reference summary: {exc}") from exc
        return detector

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} is not fitted; call fit(reference) first")

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{type(self).__name__}({options})"


# -- arrays in summaries ---------------------------------------------------------------------


def encode_array(values: ArrayLike, dtype: str = "float32") -> dict[str, Any]:
    """Encode an array as ``{"base64", "dtype", "shape"}`` (little-endian, C order)."""
    arr = np.ascontiguousarray(values, dtype=_DTYPES[dtype])
    return {"base64": base64.b64encode(arr.tobytes()).decode("ascii"), "dtype": dtype, "shape": list(arr.shape)}


def decode_array(value: Mapping[str, Any]) -> NDArray[Any]:
    """Decode :func:`encode_array` output into a writable array (float32 widens to float64)."""
    dtype = _DTYPES[value["dtype"]]
    shape = tuple(int(s) for s in value["shape"])
    try:
        raw = base64.b64decode(value["base64"], validate=True)
    except binascii.Error as exc:
        raise ValueError(f"invalid base64: {exc}") from None
    if len(raw) != math.prod(shape) * dtype.itemsize:
        raise ValueError(f"{len(raw)} bytes do not hold a {value['dtype']} array of shape {list(shape)}")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    return arr.astype(np.float64) if dtype.kind == "f" else arr.astype(np.int64)


# -- input checks and sampling ------------------------------------------------------------


def as_matrix(values: ArrayLike, name: str, *, min_rows: int = 2) -> FloatArray:
    """``values`` as a finite float64 ``(n, d)`` matrix, or a ValueError naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples × features), got shape {arr.shape}")
    return _check(arr, name, min_rows)


def as_vector(values: ArrayLike, name: str, *, min_rows: int = 2) -> FloatArray:
    """``values`` as a finite float64 1-D array, or a ValueError naming ``name``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of scores, got shape {arr.shape}")
    return _check(arr, name, min_rows)


def as_labels(values: ArrayLike, name: str) -> IntArray:
    """``values`` as a 1-D array of non-negative integer class indices."""
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of class indices, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        as_int = arr.astype(np.int64)
        if not np.array_equal(as_int, arr):
            raise ValueError(f"{name} must hold integer class indices")
        arr = as_int
    if arr.min() < 0:
        raise ValueError(f"{name} holds a negative class index")
    return arr.astype(np.int64)


def _check(arr: FloatArray, name: str, min_rows: int) -> FloatArray:
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples, got {arr.shape[0]}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinity")
    return arr


def stored_precision(values: FloatArray) -> FloatArray:
    """``values`` rounded to float32, the precision multivariate reference samples are stored in.

    Both windows go through it, so a reloaded detector scores exactly like the one that was
    fitted and the reference never differs from the window by rounding alone.
    """
    return values.astype(np.float32).astype(np.float64)


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """An independent random stream ``stream`` of ``seed``.

    Fitting, sampling the current window and drawing permutations each use their own stream, so
    one never shifts another and scoring the same window twice draws the same permutations.
    """
    return np.random.default_rng([seed, stream])


def bounded_sample(values: NDArray[Any], limit: int | None, rng: np.random.Generator) -> NDArray[Any]:
    """At most ``limit`` rows of ``values``, drawn uniformly without replacement.

    This is what a reservoir sample of a stream leaves behind; comparing a uniform subsample keeps
    every test valid (exchangeability is preserved) and bounds both memory and time.
    """
    if limit is None or len(values) <= limit:
        return values
    return values[np.sort(rng.choice(len(values), size=limit, replace=False))]


def permutation_p_value(observed: float, null: FloatArray) -> float:
    """``(1 + #{null >= observed}) / (1 + B)``: a valid p-value for ``B`` permutation statistics.

    Counting the observed arrangement as one of the permutations makes
    ``P(p <= alpha) <= alpha`` exactly under exchangeability, for any ``B``.
    """
    return float((1 + np.count_nonzero(null >= observed)) / (1 + null.size))


def check_positive(name: str, value: int | None, *, allow_none: bool = False) -> None:
    """Refuse a non-positive count option early, naming it."""
    if value is None and allow_none:
        return
    if value is None or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def group_masks(n_reference: int, n_current: int, n_permutations: int, rng: np.random.Generator) -> FloatArray:
    """Indicator rows of "belongs to the reference group" over the pooled samples.

    Row 0 is the observed split (reference first, then current); rows 1..B are uniform random
    relabellings. Returned as float64 so every permutation's statistic comes out of one matrix
    product with the pooled data instead of a Python loop.
    """
    observed = np.zeros(n_reference + n_current)
    observed[:n_reference] = 1.0
    permuted = rng.permuted(np.tile(observed, (n_permutations, 1)), axis=1)
    return np.vstack([observed, permuted])
