"""Pure evaluation: stored rows -> mergeable per-slice states -> named metric points.

A *slice* is a model version as a whole (``cohort_key == ""``) or one value of a configured
cohort key (``camera = cam-3``). Rows are first grouped by (version, value of every cohort key);
each group's states are computed once and slices are merges of groups, so a record is scanned
once however many slices it belongs to. No database and no clock here.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypedDict

import numpy as np

from monitor.metrics import (
    AgreementState,
    CalibrationState,
    ClassificationState,
    CostPrices,
    CostState,
    DetectionState,
    agreement_metrics,
    agreement_state,
    calibration_metrics,
    calibration_state_from_confidences,
    classification_metrics,
    classification_state,
    cost_metrics,
    cost_state,
    detection_metrics,
    probability_states,
)
from monitor.metrics._quantiles import QuantileSketch
from monitor.server.services.decode import StoredImage, images_detection_state, probability_matrix
from monitor.server.store.reads import Rows

# how the ``class`` column of metric rows encodes a confusion cell and a drift row's feature
from monitor.server.store.tables import CELL_SEPARATOR as CELL_SEPARATOR
from monitor.server.store.tables import FEATURE_SEPARATOR as FEATURE_SEPARATOR
from monitor.wire import STATUS_OK, ModelSpec


class SliceKey(NamedTuple):
    version: str
    cohort_key: str
    cohort_value: str


class StateColumns(TypedDict):
    """The ``eval_states`` columns of one slice state: counts, and serialised states."""

    predictions: int
    errors: int
    labelled: int
    classification: bytes | None
    calibration: bytes | None
    detection: bytes | None
    latency: bytes
    label_latency: bytes
    agreement: bytes | None
    cost: bytes | None


@dataclass(frozen=True)
class SliceState:
    """Everything the metrics of a slice need, for one hour or a merge of hours.

    ``agreement``: the annotations of the slice's predictions (classification; None without
    any). ``cost``: its predictions' latencies by device and batch size (None for what late
    labels add, which brings no predictions)."""

    predictions: int
    errors: int
    labelled: int
    classification: ClassificationState | None
    calibration: CalibrationState | None
    detection: DetectionState | None
    latency: QuantileSketch
    label_latency: QuantileSketch
    agreement: AgreementState | None = None
    cost: CostState | None = None

    @classmethod
    def merge(cls, *states: SliceState) -> SliceState:
        if len(states) == 1:
            return states[0]
        return cls(
            predictions=sum(s.predictions for s in states),
            errors=sum(s.errors for s in states),
            labelled=sum(s.labelled for s in states),
            classification=merge_classification([s.classification for s in states]),
            calibration=merge_calibration([s.calibration for s in states]),
            detection=_merge(DetectionState, [s.detection for s in states]),
            latency=QuantileSketch.merge(*(s.latency for s in states)),
            label_latency=QuantileSketch.merge(*(s.label_latency for s in states)),
            agreement=_merge(AgreementState, _same_agreement_classes([s.agreement for s in states])),
            cost=_merge(CostState, [s.cost for s in states]),
        )

    def blobs(self) -> StateColumns:
        """The ``eval_states`` columns."""
        return {
            "predictions": self.predictions,
            "errors": self.errors,
            "labelled": self.labelled,
            "classification": None if self.classification is None else self.classification.to_bytes(),
            "calibration": None if self.calibration is None else self.calibration.to_bytes(),
            "detection": None if self.detection is None else self.detection.to_bytes(),
            "latency": self.latency.to_bytes(),
            "label_latency": self.label_latency.to_bytes(),
            "agreement": None if self.agreement is None else self.agreement.to_bytes(),
            "cost": None if self.cost is None else self.cost.to_bytes(),
        }

    @classmethod
    def from_row(cls, row: Any) -> SliceState:
        return cls(
            predictions=row.predictions,
            errors=row.errors,
            labelled=row.labelled,
            classification=None if row.classification is None else ClassificationState.from_bytes(row.classification),
            calibration=None if row.calibration is None else CalibrationState.from_bytes(row.calibration),
            detection=None if row.detection is None else DetectionState.from_bytes(row.detection),
            latency=QuantileSketch.from_bytes(row.latency),
            label_latency=QuantileSketch.from_bytes(row.label_latency),
            agreement=None if row.agreement is None else AgreementState.from_bytes(row.agreement),
            cost=None if row.cost is None else CostState.from_bytes(row.cost),
        )


def _same_agreement_classes(states: list[AgreementState | None]) -> list[AgreementState | None]:
    """Agreement states of hours before and after the class list grew merge over the longer list."""
    widest = max((s.num_classes for s in states if s is not None), default=0)
    return [None if s is None else s.widen(widest) for s in states]


def merge_classification(states: Sequence[ClassificationState | None], num_classes: int = 0) -> ClassificationState | None:
    """The exact merge of classification states (None: nothing labelled), over the longest class
    list among them and ``num_classes``."""
    return _merge(ClassificationState, _same_classes(list(states), num_classes))


def merge_calibration(states: Sequence[CalibrationState | None]) -> CalibrationState | None:
    """The exact merge of calibration states (None: nothing labelled)."""
    return _merge(CalibrationState, _same_classwise(list(states)))


def _same_classes(states: list[ClassificationState | None], num_classes: int = 0) -> list[ClassificationState | None]:
    """Hours from before and after the model's class list grew (classes are only ever appended,
    see services.models) merge over the longer list."""
    widest = max((s.num_classes for s in states if s is not None), default=num_classes)
    widest = max(widest, num_classes)
    return [None if s is None else s.widen(widest) for s in states]


def _same_classwise(states: list[CalibrationState | None]) -> list[CalibrationState | None]:
    """Classwise tables of different class counts do not add up: a window across a change of the
    class list has no classwise ECE (top-label ECE, MCE and Brier are unaffected)."""
    shapes = {s.classwise_count.shape for s in states if s is not None and s.classwise_count is not None}
    if len(shapes) <= 1:
        return states
    return [None if s is None else s.without_classwise() for s in states]


def _merge(kind: Any, states: Sequence[Any]) -> Any:
    present = [s for s in states if s is not None]
    if not present:
        return None
    return present[0] if len(present) == 1 else kind.merge(*present)


# --------------------------------------------------------------------------------------------
# rows -> states


def slice_states(
    rows: Rows, spec: ModelSpec, cohort_keys: Sequence[str], max_cohort_values: int, *, labels_only: bool = False
) -> dict[SliceKey, SliceState]:
    """The states of every slice present in ``rows`` (an hour, or a set of late-labelled rows).

    ``labels_only``: what the labels of ``rows`` add to states that count their predictions
    already (late labels): no predictions, errors or latencies.
    """
    if len(rows) == 0:
        return {}
    values = [_cohort_values(c, cohort_keys) for c in rows.cohort]
    groups: dict[tuple[str, tuple[str, ...]], list[int]] = defaultdict(list)
    for i, (version, vals) in enumerate(zip(rows.version, values, strict=True)):
        groups[(version, vals)].append(i)
    group_states = {key: _group_state(rows, np.array(idx), spec, labels_only) for key, idx in groups.items()}
    # cohort values that get slices of their own: the most frequent, up to the cap
    kept: list[set[str]] = []
    for k in range(len(cohort_keys)):
        counts = Counter(v[k] for v in values if v[k])
        kept.append({v for v, _ in counts.most_common(max_cohort_values)})
    members: dict[SliceKey, list[SliceState]] = defaultdict(list)
    for (version, vals), state in group_states.items():
        members[SliceKey(version, "", "")].append(state)
        for k, key in enumerate(cohort_keys):
            if vals[k] in kept[k]:
                members[SliceKey(version, key, vals[k])].append(state)
    return {key: SliceState.merge(*states) for key, states in members.items()}


def _cohort_values(cohort: dict[str, Any] | None, keys: Sequence[str]) -> tuple[str, ...]:
    if not cohort:
        return ("",) * len(keys)
    out = []
    for key in keys:
        value = cohort.get(key)
        out.append("" if value is None else str(value).lower() if isinstance(value, bool) else str(value))
    return tuple(out)


def _group_state(rows: Rows, idx: np.ndarray, spec: ModelSpec, labels_only: bool) -> SliceState:
    status = rows.status[idx]
    labelled = rows.labelled[idx] & (status == STATUS_OK)
    label_delay = np.maximum(rows.labelled_at[idx][labelled] - rows.ts[idx][labelled], 0.0)
    cls = cal = det = None
    if spec.task == "classification":
        cls, cal = _classification(rows, idx[labelled], len(spec.classes))
        n_labelled = 0 if cls is None else cls.n
    else:
        det = _detection(rows, idx[labelled])
        n_labelled = int(labelled.sum())
    return SliceState(
        predictions=0 if labels_only else int(idx.size),
        errors=0 if labels_only else int((status != STATUS_OK).sum()),
        labelled=n_labelled,
        classification=cls,
        calibration=cal,
        detection=det,
        latency=QuantileSketch.empty() if labels_only else QuantileSketch.of(rows.latency_ms[idx]),
        label_latency=QuantileSketch.of(label_delay),
        agreement=_agreement(rows, idx, len(spec.classes)) if spec.task == "classification" else None,
        cost=None if labels_only else _cost(rows, idx),
    )


def _agreement(rows: Rows, idx: np.ndarray, num_classes: int) -> AgreementState | None:
    """The agreement counts of the annotations of ``idx`` (every prediction, labelled or not: a
    disputed one may have no label under the ``exclude`` policy); None when there are none.

    In ``labels_only`` states (late labels) too: a late label merged as an increment is its
    prediction's first annotation, so its item is new to the hour's state and adding it is exact.
    Any later annotation marks the hour for recomputation (services/ingest.py, ``Changes``)."""
    if rows.annotations is None:
        return None
    items: list[int] = []
    annotators: list[str] = []
    labels: list[int] = []
    audit: list[bool] = []
    for i in idx.tolist():
        for a in rows.annotations[i]:
            items.append(i)
            annotators.append(a.annotator)
            labels.append(a.label)
            audit.append(a.audit)
    if not items:
        return None
    return agreement_state(np.array(items), annotators, np.array(labels), num_classes=num_classes, audit=np.array(audit))


def _cost(rows: Rows, idx: np.ndarray) -> CostState:
    return cost_state(rows.latency_ms[idx], devices=[rows.device[i] for i in idx.tolist()], batch_sizes=rows.batch_size[idx])


def _classification(rows: Rows, idx: np.ndarray, num_classes: int) -> tuple[ClassificationState | None, CalibrationState | None]:
    with_probs = [i for i in idx if rows.probabilities[i] is not None]
    class_only = [i for i in idx if rows.probabilities[i] is None and rows.predicted_class[i] >= 0]
    cls_parts: list[ClassificationState] = []
    cal_parts: list[CalibrationState] = []
    if with_probs:
        probs = probability_matrix([rows.probabilities[i] for i in with_probs], num_classes)  # type: ignore[misc]
        c, k = probability_states(rows.label[with_probs], probs, classwise=True, samples=True)
        cls_parts.append(c)
        cal_parts.append(k)
    if class_only:
        labels, predicted = rows.label[class_only], rows.predicted_class[class_only]
        cls_parts.append(classification_state(labels, predictions=predicted, num_classes=num_classes))
        conf = rows.confidence[class_only]
        known = ~np.isnan(conf)
        if known.any():
            cal_parts.append(calibration_state_from_confidences(conf[known], (predicted == labels)[known]))
    return _merge(ClassificationState, cls_parts), _merge(CalibrationState, cal_parts)


def _detection(rows: Rows, idx: np.ndarray) -> DetectionState | None:
    if idx.size == 0:
        return None
    return images_detection_state([
        StoredImage(rows.prediction_id[i], rows.boxes[i], rows.box_classes[i], rows.box_scores[i],
                    rows.gt_boxes[i], rows.gt_classes[i], rows.gt_crowd[i])
        for i in idx
    ])  # fmt: skip


# --------------------------------------------------------------------------------------------
# states -> metric points


class Point(NamedTuple):
    metric: str
    cls: str  # class name, reliability bin or confusion cell; "" for whole-slice metrics
    value: float | None  # None: undefined (never 0)
    sample_count: int


#: Confusion cells exported per slice (diagonal and the largest errors): a 1 000-class matrix
#: must not become a million series.
MAX_CONFUSION_CELLS = 200


def slice_points(
    state: SliceState,
    spec: ModelSpec,
    window_seconds: float,
    *,
    per_class: bool,
    confusion: bool,
    costs: CostPrices | None = None,
    max_annotators: int = 0,
) -> list[Point]:
    """The named metrics of a slice over a window of ``window_seconds``. ``costs``: the prices
    cost per 1 000 inferences needs (None: no cost). ``max_annotators``: annotators whose
    accuracy a whole version reports, those with the most audited items."""
    n = state.predictions
    points = [
        Point("predictions", "", float(n), n),
        Point("throughput_per_second", "", n / window_seconds, n),
        Point("error_rate", "", state.errors / n if n else None, n),
        Point("labelled", "", float(state.labelled), state.labelled),
        Point("label_coverage", "", state.labelled / n if n else None, n),
    ]
    latency_n, label_latency_n = state.latency.n, state.label_latency.n
    for q, value in zip((50, 95, 99), state.latency.quantiles((0.5, 0.95, 0.99)), strict=True):
        points.append(Point(f"latency_p{q}_ms", "", value, latency_n))
    for q, value in zip((50, 95), state.label_latency.quantiles((0.5, 0.95)), strict=True):
        points.append(Point(f"label_latency_p{q}_seconds", "", value, label_latency_n))
    if state.classification is not None:
        points += _classification_points(state.classification, spec, per_class=per_class, confusion=confusion)
    if state.calibration is not None:
        points += _calibration_points(state.calibration, per_class=per_class)
    if state.detection is not None:
        points += _detection_points(state.detection, spec, per_class=per_class)
    if spec.task == "classification":
        points += _agreement_points(state, spec, per_class=per_class, max_annotators=max_annotators)
    if costs is not None and state.cost is not None:
        cost = cost_metrics(state.cost, costs)
        points.append(Point("cost_per_1k", "", cost.cost_per_1k, cost.costed))
    return points


def _agreement_points(state: SliceState, spec: ModelSpec, *, per_class: bool, max_annotators: int) -> list[Point]:
    """Label quality from the annotations of the slice's predictions (docs/quality.md).

    ``multi_annotated_coverage`` is in every slice, 0 without annotations: per cohort it shows
    whether the multiply-annotated sample, on which agreement is measured, covers the cohort."""
    n = state.predictions
    if state.agreement is None:
        return [Point("multi_annotated_coverage", "", 0.0, n)] if n else []
    m = agreement_metrics(state.agreement)
    points = [Point("multi_annotated_coverage", "", m.items / n, n)] if n else []
    if m.items:
        points += [
            Point("label_agreement", "", m.percent_agreement, m.items),
            Point("krippendorff_alpha", "", m.krippendorff_alpha, m.items),
            Point("fleiss_kappa", "", m.fleiss_kappa, m.items),
            Point("disputed_items", "", float(m.disputed), m.items),
        ]
    if not per_class:
        return points
    for name, pc in zip(spec.classes, m.per_class, strict=False):
        if pc.values:
            points += [
                Point("specific_agreement", name, pc.specific_agreement, pc.values),
                Point("disputed_items", name, float(pc.disputed), pc.values),
            ]
    # named annotators only: the unnamed one ("") would read as a whole-slice row
    audited = sorted((a for a in m.annotators if a.audited and a.annotator), key=lambda a: (-a.audited, a.annotator))
    points += [Point("annotator_accuracy", a.annotator, a.accuracy, a.audited) for a in audited[:max_annotators]]
    return points


def _classification_points(state: ClassificationState, spec: ModelSpec, *, per_class: bool, confusion: bool) -> list[Point]:
    m = classification_metrics(state, top_k=(1, 5))
    n = state.n
    top5_n = int(state.rank_counts.sum())
    points = [
        Point("accuracy", "", m.accuracy, n),
        Point("top5_accuracy", "", m.top_k_accuracy.get(5) if top5_n else None, top5_n),
        Point("f1_macro", "", m.macro.f1, n),
        Point("f1_weighted", "", m.weighted.f1, n),
        Point("precision_macro", "", m.macro.precision, n),
        Point("recall_macro", "", m.macro.recall, n),
    ]
    if per_class:
        for c, name in enumerate(spec.classes):
            pc = m.per_class[c]
            points += [
                Point("precision", name, pc.precision, pc.predicted),
                Point("recall", name, pc.recall, pc.support),
                Point("f1", name, pc.f1, pc.support),
            ]
    if confusion:
        points += _confusion_points(m.confusion_matrix, spec.classes)
    return points


def _confusion_points(matrix: np.ndarray, classes: Sequence[str]) -> list[Point]:
    true_idx, pred_idx = np.nonzero(matrix)
    counts = matrix[true_idx, pred_idx]
    # the diagonal first, then the largest confusions
    order = np.lexsort((-counts, true_idx != pred_idx))[:MAX_CONFUSION_CELLS]
    return [
        Point("confusion", f"{classes[true_idx[i]]}{CELL_SEPARATOR}{classes[pred_idx[i]]}", float(counts[i]), int(counts[i]))
        for i in order
    ]


def _calibration_points(state: CalibrationState, *, per_class: bool) -> list[Point]:
    m = calibration_metrics(state)
    n = state.n
    points = [
        Point("ece", "", m.ece, n),
        Point("adaptive_ece", "", m.adaptive_ece, n),
        Point("mce", "", m.mce, n),
        Point("classwise_ece", "", m.classwise_ece, n),
        Point("brier", "", m.brier, n),
    ]
    if per_class:
        for b in m.reliability:
            edge = f"{b.lower:.3f}"
            points += [
                Point("reliability_accuracy", edge, b.accuracy, b.count),
                Point("reliability_confidence", edge, b.confidence, b.count),
            ]
    return points


_DETECTION_SUMMARY = {
    "ap": "map", "ap50": "map50", "ap75": "map75", "ap_small": "ap_small", "ap_medium": "ap_medium",
    "ap_large": "ap_large", "ar1": "ar1", "ar10": "ar10", "ar100": "ar100", "ar_small": "ar_small",
    "ar_medium": "ar_medium", "ar_large": "ar_large",
}  # fmt: skip


def _detection_points(state: DetectionState, spec: ModelSpec, *, per_class: bool) -> list[Point]:
    m = detection_metrics(state, score_threshold=spec.operating_threshold, per_class=per_class)
    summary = m.summary()
    points = [Point(_DETECTION_SUMMARY[name], "", summary[name], m.n_images) for name in _DETECTION_SUMMARY]
    points += [
        Point("precision_at_threshold", "", m.precision, m.n_detections),
        Point("recall_at_threshold", "", m.recall, m.n_ground_truth),
        Point("dece", "", m.dece, m.n_detections),
    ]
    if per_class:
        for class_id, pc in sorted(m.per_class.items()):
            name = spec.classes[class_id] if 0 <= class_id < len(spec.classes) else str(class_id)
            points += [
                Point("ap", name, pc.ap, pc.ground_truth),
                Point("ap50", name, pc.ap50, pc.ground_truth),
                Point("precision", name, pc.precision, pc.detections),
                Point("recall", name, pc.recall, pc.ground_truth),
            ]
    return points


def merge_slices(states: Iterable[dict[SliceKey, SliceState]]) -> dict[SliceKey, SliceState]:
    """Merge per-hour slice states into the states of a window."""
    members: dict[SliceKey, list[SliceState]] = defaultdict(list)
    for hour in states:
        for key, state in hour.items():
            members[key].append(state)
    return {key: SliceState.merge(*parts) for key, parts in members.items()}
