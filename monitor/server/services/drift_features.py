"""Pure drift computation for the drift job: features from stored predictions, bounded samples per
slice, fitting and scoring the configured detectors, and the label-free estimate. No database and
no clock: :mod:`monitor.server.jobs.drift` reads the records and writes the rows.

=================  ==================================  ======================================
feature            classification                      detection
=================  ==================================  ======================================
embedding          the embedding sent with a prediction (either task)
confidence         top-class confidence                every box score, also below the threshold
class_mix          predicted class                     classes of boxes at or above the threshold
boxes_per_image    --                                  boxes at or above the threshold
box_area           --                                  areas (pixels²) of those boxes
=================  ==================================  ======================================

Box features count only boxes at or above the model's operating threshold (what users are shown);
the score distribution keeps every box, so boxes sliding under the threshold show up in it.

A result is stored as metric rows (:class:`~monitor.server.services.states.Point`): ``drift_score``,
``drift_p_value`` (detectors with a p-value) or ``drift_threshold`` (the score bound of those
without), ``drift_effect_size`` and ``drift_min_effect`` (its floor, when there is one), and
``drift_detected`` (0 / 1: the test rejects and the effect is above the floor), with class
``"<detector>:<feature>"``; the estimate as ``estimated_accuracy`` (class ""),
``estimated_precision`` / ``estimated_recall`` per class name (whole versions only, like the
evaluation's per-class metrics) or, for detection, ``estimated_precision_at_threshold``.
"""

from __future__ import annotations

import json
import math
import zlib
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
from numpy.typing import NDArray

from detectors import Detector, EffectFloor, LabelFreeAccuracy, LabelFreeDetectionPrecision, SummaryError
from detectors.estimate import Calibration
from monitor.server.services.decode import StoredImage, image_key, images_detection_state, probability_matrix
from monitor.server.services.states import Point, SliceKey, _cohort_values
from monitor.server.settings import DRIFT_DETECTOR_FEATURES, parse_window
from monitor.server.store.drift_reads import Record
from monitor.server.store.tables import FEATURE_SEPARATOR
from monitor.wire import ModelSpec

if TYPE_CHECKING:
    from monitor.server.settings import Settings

DRIFT_METRICS: Final = (
    "drift_score", "drift_p_value", "drift_threshold", "drift_effect_size", "drift_min_effect", "drift_detected",
)  # fmt: skip
ESTIMATE_METRICS: Final = (
    "estimated_accuracy",
    "estimated_precision",
    "estimated_recall",
    "estimated_precision_at_threshold",
)
#: Every metric the drift job writes: the evaluate job leaves these rows alone.
JOB_METRICS: Final = DRIFT_METRICS + ESTIMATE_METRICS
#: The ``detector`` of the stored label-free calibration in ``drift_references``.
ESTIMATOR: Final = "label_free"
#: Features per task; embeddings are scored when predictions carry them.
TASK_FEATURES: Final = {
    "classification": frozenset({"embedding", "confidence", "class_mix"}),
    "detection": frozenset({"embedding", "confidence", "class_mix", "boxes_per_image", "box_area"}),
}
#: Features binned as classes (the rest are continuous scores, binned at reference quantiles).
_CATEGORICAL: Final = frozenset({"class_mix"})
_PERMUTED: Final = frozenset({"mmd", "classifier", "wasserstein"})
_RESAMPLED: Final = frozenset({"psi", "jensen_shannon"})
_CLASS_BINNED: Final = frozenset({"chi_square", "psi", "jensen_shannon"})

Estimator = LabelFreeAccuracy | LabelFreeDetectionPrecision


@dataclass(frozen=True, slots=True, order=True)
class DetectorSpec:
    """One configured detector on one feature, e.g. ``mmd:embedding``."""

    detector: str
    feature: str

    @classmethod
    def parse(cls, text: str) -> DetectorSpec:
        detector, _, feature = text.partition(FEATURE_SEPARATOR)
        if feature not in DRIFT_DETECTOR_FEATURES.get(detector, ()):
            raise ValueError(f"not a detector:feature pair the drift job scores: {text!r}")
        return cls(detector, feature)

    @property
    def cls(self) -> str:
        """The ``class`` column of its rows."""
        return f"{self.detector}{FEATURE_SEPARATOR}{self.feature}"


@dataclass(frozen=True)
class DriftConfig:
    """The drift settings, parsed (see :class:`~monitor.server.settings.Settings`)."""

    windows: tuple[tuple[str, int], ...]  # (name, seconds)
    detectors: tuple[DetectorSpec, ...]
    alpha: float
    min_samples: int
    max_samples: int
    reference_size: int
    min_labels: int
    calibration: Calibration
    lookback_seconds: int
    max_windows_per_run: int
    cohort_keys: tuple[str, ...]
    max_cohort_values: int
    #: Per-model effect-size floors (:mod:`.drift_floors`); a pair not named is calibrated.
    min_effect: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> DriftConfig:
        return cls(
            windows=tuple((w, parse_window(w)) for w in settings.drift_windows),
            detectors=tuple(DetectorSpec.parse(d) for d in settings.drift_detectors),
            alpha=settings.drift_alpha,
            min_samples=settings.drift_min_samples,
            max_samples=settings.drift_max_samples,
            reference_size=settings.drift_reference_size,
            min_labels=settings.drift_min_labels,
            calibration=cast(Calibration, settings.drift_calibration),  # checked by Settings.validate
            lookback_seconds=parse_window(settings.drift_lookback),
            max_windows_per_run=settings.drift_max_windows_per_run,
            cohort_keys=tuple(settings.cohort_keys),
            max_cohort_values=settings.max_cohort_values,
            min_effect=settings.drift_min_effect,
        )

    def detectors_for(self, task: str) -> tuple[DetectorSpec, ...]:
        return tuple(d for d in self.detectors if d.feature in TASK_FEATURES[task])


# --------------------------------------------------------------------------------------------
# sampling


class SliceSampler:
    """Per slice, the ``k`` records with the smallest sampling keys.

    The key is a hash of the prediction id, independent of the data, so the records kept are a
    uniform sample of the slice (every test stays valid on it), and the sample of a window is the
    sample of the samples of its hours: a day is read hour by hour in bounded memory.
    """

    def __init__(self, slices: Collection[SliceKey], cohort_keys: Sequence[str], k: int) -> None:
        self.k = k
        self.cohort_keys = tuple(cohort_keys)
        self._wanted = frozenset(slices)
        self._keys: dict[SliceKey, NDArray[np.int64]] = {}
        self._records: dict[SliceKey, list[Record]] = {}

    def add_all(self, key: SliceKey, records: Sequence[Record]) -> None:
        """Offer every record to one slice (a reference sample: one slice of all its records)."""
        self._offer(key, records, list(range(len(records))), self._hashes(records))

    def add(self, records: Sequence[Record]) -> None:
        """Offer each record to the wanted slices it belongs to: its version, and its version's
        cohort slices."""
        members: dict[SliceKey, list[int]] = {}
        for i, r in enumerate(records):
            whole = SliceKey(r.version, "", "")
            if whole in self._wanted:
                members.setdefault(whole, []).append(i)
            for cohort_key, value in zip(self.cohort_keys, _cohort_values(r.cohort, self.cohort_keys), strict=True):
                part = SliceKey(r.version, cohort_key, value)
                if value and part in self._wanted:
                    members.setdefault(part, []).append(i)
        if members:
            hashes = self._hashes(records)
            for key, idx in members.items():
                self._offer(key, records, idx, hashes)

    @staticmethod
    def _hashes(records: Sequence[Record]) -> NDArray[np.int64]:
        return np.array([image_key(r.prediction_id) for r in records], dtype=np.int64)

    def _offer(self, key: SliceKey, records: Sequence[Record], idx: list[int], hashes: NDArray[np.int64]) -> None:
        keys = np.concatenate([self._keys.get(key, np.zeros(0, np.int64)), hashes[idx]])
        kept = self._records.get(key, []) + [records[i] for i in idx]
        if len(keys) > self.k:
            smallest = np.argpartition(keys, self.k)[: self.k]
            keys, kept = keys[smallest], [kept[i] for i in smallest]
        self._keys[key], self._records[key] = keys, kept

    def records(self, key: SliceKey) -> list[Record]:
        """The sample of a slice, in key order (so results never depend on the order of reads)."""
        keys = self._keys.get(key)
        if keys is None:
            return []
        return [self._records[key][i] for i in np.argsort(keys, kind="stable")]


# --------------------------------------------------------------------------------------------
# features


def extract(records: Sequence[Record], spec: ModelSpec, wanted: Collection[str]) -> dict[str, NDArray[Any]]:
    """The ``wanted`` features of ``records`` (``probabilities`` too, for the estimate); a feature
    no record carries is absent."""
    out: dict[str, NDArray[Any]] = {}
    if "embedding" in wanted:
        emb = _embeddings(records)
        if emb is not None:
            out["embedding"] = emb
    if spec.task == "classification":
        if "confidence" in wanted:
            out["confidence"] = np.array([r.confidence for r in records if r.confidence is not None], dtype=np.float64)
        if "class_mix" in wanted:
            out["class_mix"] = np.array(
                [r.predicted_class for r in records if r.predicted_class is not None], dtype=np.int64
            )
        if "probabilities" in wanted:
            probs = [r.probabilities for r in records if r.probabilities is not None]
            out["probabilities"] = probability_matrix(probs, len(spec.classes)).astype(np.float64)
    else:
        out.update(_box_features(records, spec.operating_threshold, wanted))
    return {name: values for name, values in out.items() if len(values)}


def _embeddings(records: Sequence[Record]) -> NDArray[np.float64] | None:
    arrays = [
        np.frombuffer(r.embedding, "<f2" if r.embedding_dtype == 2 else "<f4")
        for r in records
        if r.embedding is not None
    ]
    if not arrays:
        return None
    # a version whose embedding size changed midway: score the usual size
    dim = Counter(a.size for a in arrays).most_common(1)[0][0]
    return np.stack([a for a in arrays if a.size == dim]).astype(np.float64)


def _box_features(records: Sequence[Record], threshold: float, wanted: Collection[str]) -> dict[str, NDArray[Any]]:
    images = [r for r in records if r.boxes is not None and r.box_scores is not None and r.box_classes is not None]
    scores = [np.frombuffer(r.box_scores or b"", "<f4").astype(np.float64) for r in images]
    kept = [s >= threshold for s in scores]
    out: dict[str, NDArray[Any]] = {}
    if "confidence" in wanted:
        out["confidence"] = np.concatenate(scores) if scores else np.zeros(0)
    if "boxes_per_image" in wanted:
        out["boxes_per_image"] = np.array([k.sum() for k in kept], dtype=np.float64)
    if "class_mix" in wanted:
        classes = [np.frombuffer(r.box_classes or b"", "<i4")[k] for r, k in zip(images, kept, strict=True)]
        out["class_mix"] = np.concatenate(classes).astype(np.int64) if classes else np.zeros(0, np.int64)
    if "box_area" in wanted:
        boxes = [
            np.frombuffer(r.boxes or b"", "<f4").reshape(-1, 4)[k].astype(np.float64)
            for r, k in zip(images, kept, strict=True)
        ]
        out["box_area"] = (
            np.concatenate([(b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) for b in boxes]) if boxes else np.zeros(0)
        )
    return out


# --------------------------------------------------------------------------------------------
# detectors


def make_detector(spec: DetectorSpec, *, alpha: float, n_classes: int, min_samples: int | None = None) -> Detector:
    """An unfitted detector for ``spec`` at level ``alpha``, with an effect-size floor calibrated on
    its reference from samples of ``min_samples`` (the smallest window scored; None: no floor).

    Permutation and resampling counts grow with ``1 / alpha``: a permutation p-value is never below
    ``1 / (B + 1)``, so a detector with 100 permutations could never flag at ``alpha = 0.005``.
    """
    from detectors.serial import DETECTORS

    options: dict[str, Any] = {"alpha": alpha, "seed": 0}
    if min_samples is not None:
        options["floor"] = EffectFloor(chunk=max(min_samples, 10))
    if spec.detector in _PERMUTED:
        options["n_permutations"] = max(200, math.ceil(2 / alpha))
    if spec.detector in _RESAMPLED:
        options["n_resamples"] = max(1000, math.ceil(10 / alpha))
    if spec.detector in _CLASS_BINNED:
        if spec.feature in _CATEGORICAL:
            options["n_classes"] = n_classes
            if spec.detector in _RESAMPLED:
                options["kind"] = "categorical"
        elif spec.detector in _RESAMPLED:
            options["kind"] = "quantile"
    return DETECTORS[spec.detector](**options)


@dataclass(frozen=True)
class Fitted:
    """A detector fitted on a reference, and how many reference values it saw."""

    spec: DetectorSpec
    detector: Detector
    n_reference: int


def fit_detectors(
    specs: Sequence[DetectorSpec], features: dict[str, NDArray[Any]], *, alpha: float, n_classes: int, min_samples: int
) -> tuple[list[Fitted], list[str]]:
    """Fit every detector whose feature the reference holds at least ``min_samples`` values of;
    returns the fitted ones and why the others were not."""
    fitted, skipped = [], []
    for spec in specs:
        values = features.get(spec.feature)
        if values is None or len(values) < min_samples:
            skipped.append(f"{spec.cls}: {0 if values is None else len(values)} reference values")
            continue
        try:
            detector = make_detector(spec, alpha=alpha, n_classes=n_classes, min_samples=min_samples)
            fitted.append(Fitted(spec, detector.fit(values), len(values)))
        except ValueError as exc:  # e.g. identical reference rows: no kernel bandwidth
            skipped.append(f"{spec.cls}: {exc}")
    return fitted, skipped


def score(
    fitted: Sequence[tuple[DetectorSpec, Detector]],
    features: dict[str, NDArray[Any]],
    min_samples: int,
    floors: Mapping[str, float | None] | None = None,
) -> tuple[list[Point], list[str]]:
    """Score a window slice's features; a feature with fewer than ``min_samples`` values is not scored.
    ``floors`` (detector:feature -> floor) replace the floors calibrated on the reference."""
    points: list[Point] = []
    problems: list[str] = []
    for spec, detector in fitted:
        values = features.get(spec.feature)
        if values is None or len(values) < min_samples:
            continue
        try:
            result = detector.score(values)
        except ValueError as exc:  # e.g. the embedding size changed since the reference
            problems.append(f"{spec.cls}: {exc}")
            continue
        override = (floors or {}).get(spec.cls)
        if override is not None:
            result = result.with_floor(override or None)  # 0: the test alone decides
        n = result.n_current
        points.append(Point("drift_score", spec.cls, result.score, n))
        if result.p_value is not None:
            points.append(Point("drift_p_value", spec.cls, result.p_value, n))
        elif result.threshold is not None:  # PSI, Jensen-Shannon: the bound calibrated for this window's size
            points.append(Point("drift_threshold", spec.cls, result.threshold, n))
        points.append(Point("drift_effect_size", spec.cls, result.effect_size, n))
        if result.floor is not None:
            points.append(Point("drift_min_effect", spec.cls, result.floor, n))
        points.append(Point("drift_detected", spec.cls, float(result.is_drift), n))
    return points, problems


# --------------------------------------------------------------------------------------------
# label-free estimate


def estimator_feature(task: str) -> str:
    """The ``feature`` of the stored calibration: what it estimates."""
    return "accuracy" if task == "classification" else "precision_at_threshold"


def fit_estimator(
    records: Sequence[Record], spec: ModelSpec, *, calibration: Calibration, min_labels: int
) -> tuple[Estimator, int] | None:
    """Calibrate on the labelled ``records``; None with fewer than ``min_labels`` usable labels.

    Classification: probabilities and labels (``LabelFreeAccuracy``). Detection: every box of a
    labelled image matched to ground truth at IoU ≥ 0.5 as the evaluation matches them, and
    ``P(true positive | score)`` fitted on the boxes at or above the operating threshold.
    """
    labelled = [r for r in records if r.labelled]
    if spec.task == "classification":
        rows = [r for r in labelled if r.label is not None and r.probabilities is not None]
        if len(rows) < min_labels:
            return None
        probs = probability_matrix([r.probabilities for r in rows if r.probabilities is not None], len(spec.classes))
        labels = np.array([r.label for r in rows], dtype=np.int64)
        est = LabelFreeAccuracy(calibration=calibration).fit(probs.astype(np.float64), labels)
        return est, len(rows)
    images = [r for r in labelled if r.boxes is not None and r.box_scores is not None]
    if len(images) < min_labels:
        return None
    scores, true_positive = _matched_boxes(images)
    try:
        return LabelFreeDetectionPrecision(threshold=spec.operating_threshold).fit(scores, true_positive), len(images)
    except ValueError:  # fewer than two boxes at or above the threshold
        return None


def _matched_boxes(images: Sequence[Record]) -> tuple[NDArray[np.float64], NDArray[np.bool_]]:
    """Score and true-positive flag (IoU ≥ 0.5, all areas) of every box; boxes matched to crowd
    regions are left out, as the evaluation ignores them."""
    state = images_detection_state([
        StoredImage(r.prediction_id, r.boxes, r.box_classes, r.box_scores, r.gt_boxes, r.gt_classes, r.gt_crowd)
        for r in images
    ])  # fmt: skip
    # bit 0 of the flags: all areas at IoU 0.50
    counted = (state.ignored & 1) == 0
    return np.asarray(state.score[counted], np.float64), (state.tp[counted] & 1) == 1


def estimator_to_bytes(est: Estimator) -> bytes:
    """The fitted calibration as zlib-compressed JSON, like ``detectors.to_bytes``."""
    return zlib.compress(json.dumps(est.to_dict(), separators=(",", ":"), allow_nan=False).encode())


def estimator_from_bytes(data: bytes, task: str) -> Estimator:
    try:
        payload = json.loads(zlib.decompress(data))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SummaryError(f"not a stored calibration: {exc}") from exc
    kind = LabelFreeAccuracy if task == "classification" else LabelFreeDetectionPrecision
    return kind.from_dict(payload)


def estimate(
    est: Estimator, features: dict[str, NDArray[Any]], spec: ModelSpec, *, per_class: bool, min_samples: int
) -> list[Point]:
    """The label-free estimate of a window slice (nothing below ``min_samples`` predictions/boxes)."""
    if isinstance(est, LabelFreeDetectionPrecision):
        scores = features.get("confidence", np.zeros(0))
        n = int(np.count_nonzero(scores >= est.threshold))
        value = est.estimate(scores) if n >= min_samples else None
        return [] if value is None else [Point("estimated_precision_at_threshold", "", value, n)]
    probs = features.get("probabilities")
    if probs is None or len(probs) < min_samples:
        return []
    try:
        result = est.estimate(probs)
    except ValueError:  # classes were appended since the calibration: it no longer applies
        return []
    n = len(probs)
    points = [Point("estimated_accuracy", "", result.accuracy, n)]
    if per_class:
        predicted = np.bincount(probs.argmax(axis=1), minlength=len(spec.classes))
        support = est.calibrated(probs).sum(axis=0)
        for c, name in enumerate(spec.classes):
            points.append(Point("estimated_precision", name, result.precision[c], int(predicted[c])))
            points.append(Point("estimated_recall", name, result.recall[c], round(support[c])))
    return points
