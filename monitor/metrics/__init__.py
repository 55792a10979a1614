"""Model-quality metrics: pure numpy in, frozen dataclasses out; no database, no clock.

Every metric is computed in two steps. A *state* summarises a window of data (an hour of
traffic, one evaluation file) and can be stored (``to_bytes`` / ``from_bytes``) and merged with
the states of other windows (``merge``: exact, associative, commutative); a *reduce* function
turns a state into the numbers::

    state = DetectionState.merge(*hourly_states)       # a week is the merge of its hours
    metrics = detection_metrics(state, score_threshold=0.5)
    metrics.ap, metrics.per_class[3].ap50

The definitions are those of the reference tools, which the tests use as oracles:
scikit-learn (classification), torchmetrics / netcal (calibration), pycocotools (detection),
krippendorff / statsmodels / scikit-learn (annotator agreement).

Importing this package needs only the standard library and numpy; the compiled kernels use
numba (``pip install 'cvmon[server]'``) when it is installed and run as Python otherwise.
"""

from ._agreement import (
    AgreementMetrics,
    AgreementState,
    AnnotatorAgreement,
    ClassAgreement,
    PairAgreement,
    agreement_metrics,
    agreement_state,
)
from ._calibration import (
    CalibrationMetrics,
    CalibrationState,
    ReliabilityBin,
    calibration_metrics,
    calibration_state,
    calibration_state_from_confidences,
    probability_states,
)
from ._classification import (
    AveragedMetrics,
    ClassificationMetrics,
    ClassificationState,
    ClassMetrics,
    classification_metrics,
    classification_state,
)
from ._coco import CocoInput, coco_input
from ._cost import CostMetrics, CostPrices, CostState, DeviceCost, cost_metrics, cost_state
from ._detection import (
    AREA_RANGES,
    IOU_THRESHOLDS,
    MAX_DETS,
    RECALL_THRESHOLDS,
    SUMMARY_NAMES,
    ClassDetectionMetrics,
    DetectionMetrics,
    DetectionState,
    detection_metrics,
)
from ._matching import detection_state
from ._warm import warm_kernels

__all__ = [
    "AREA_RANGES",
    "IOU_THRESHOLDS",
    "MAX_DETS",
    "RECALL_THRESHOLDS",
    "SUMMARY_NAMES",
    "AgreementMetrics",
    "AgreementState",
    "AnnotatorAgreement",
    "AveragedMetrics",
    "CalibrationMetrics",
    "CalibrationState",
    "ClassAgreement",
    "ClassDetectionMetrics",
    "ClassMetrics",
    "ClassificationMetrics",
    "ClassificationState",
    "CocoInput",
    "CostMetrics",
    "CostPrices",
    "CostState",
    "DetectionMetrics",
    "DetectionState",
    "DeviceCost",
    "PairAgreement",
    "ReliabilityBin",
    "agreement_metrics",
    "agreement_state",
    "calibration_metrics",
    "calibration_state",
    "calibration_state_from_confidences",
    "classification_metrics",
    "classification_state",
    "coco_input",
    "cost_metrics",
    "cost_state",
    "detection_metrics",
    "detection_state",
    "probability_states",
    "warm_kernels",
]
