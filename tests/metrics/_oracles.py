"""The reference implementations, wrapped for the tests: pycocotools, scikit-learn, torchmetrics, netcal.

Only tests import this module; the oracles are dev dependencies, never runtime ones.
"""

from __future__ import annotations

import contextlib
import copy
import io
import warnings
from typing import Any

import numpy as np

from monitor.metrics import SUMMARY_NAMES


def pycocotools_eval(gt: dict[str, Any], dt: list[dict[str, Any]]) -> Any:
    """COCOeval on deep copies (pycocotools mutates its input), evaluated, accumulated, summarised."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if dt:
            coco_dt = coco_gt.loadRes(copy.deepcopy(dt))
        else:  # loadRes cannot take an empty list; an empty result set is still a valid input
            coco_dt = COCO()
            coco_dt.dataset = {"images": copy.deepcopy(gt["images"]), "categories": copy.deepcopy(gt["categories"]),
                               "annotations": []}  # fmt: skip
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def coco_summary(evaluator: Any) -> dict[str, float | None]:
    """pycocotools' stats by name, -1 as None."""
    return {name: (None if v == -1 else float(v)) for name, v in zip(SUMMARY_NAMES, evaluator.stats, strict=True)}


def coco_per_class(evaluator: Any) -> dict[int, tuple[float | None, float | None]]:
    """Category id -> (AP, AP50) from pycocotools' precision array (area all, maxDets 100)."""
    precision = evaluator.eval["precision"]
    out: dict[int, tuple[float | None, float | None]] = {}
    for k, cat in enumerate(evaluator.params.catIds):
        s = precision[:, :, k, 0, -1]
        s50 = precision[0, :, k, 0, -1]
        out[int(cat)] = (
            float(s[s > -1].mean()) if (s > -1).any() else None,
            float(s50[s50 > -1].mean()) if (s50 > -1).any() else None,
        )
    return out


def coco_matches(evaluator: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[int, int]]:
    """Every evaluated detection's (category, score, matched, ignored) at IoU 0.5, area all, plus GT counts."""
    cats, scores, matched, ignored = [], [], [], []
    n_gt: dict[int, int] = {}
    for e in evaluator.evalImgs:
        if e is None or e["aRng"] != [0, 1e10]:
            continue
        n_gt[e["category_id"]] = n_gt.get(e["category_id"], 0) + int(np.count_nonzero(e["gtIgnore"] == 0))
        cats.extend([e["category_id"]] * len(e["dtScores"]))
        scores.extend(e["dtScores"])
        matched.extend(e["dtMatches"][0] > 0)
        ignored.extend(e["dtIgnore"][0].astype(bool))
    return (
        np.array(cats, dtype=np.int64), np.array(scores), np.array(matched, dtype=bool), np.array(ignored, dtype=bool), n_gt
    )  # fmt: skip


def torchmetrics_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int, norm: str) -> float:
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    with warnings.catch_warnings():
        # torch.bucketize warns that torchmetrics hands it non-contiguous boundaries
        warnings.filterwarnings("ignore", message=".*contiguous.*", category=UserWarning)
        value = multiclass_calibration_error(
            torch.from_numpy(probs),
            torch.from_numpy(labels),
            num_classes=probs.shape[1],
            n_bins=n_bins,
            norm=norm,
        )
    return float(value)


def torchmetrics_classwise_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    import torch
    from torchmetrics.functional.classification import binary_calibration_error

    t_probs, t_labels = torch.from_numpy(probs), torch.from_numpy(labels)
    values = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*contiguous.*", category=UserWarning)
        for j in range(probs.shape[1]):
            values.append(float(binary_calibration_error(t_probs[:, j], (t_labels == j).long(), n_bins=n_bins)))
    return float(np.mean(values))


def netcal_ece(labels: np.ndarray, probs: np.ndarray, n_bins: int, *, equal_intervals: bool = True) -> float:
    from netcal.metrics import ECE

    return float(ECE(bins=n_bins, equal_intervals=equal_intervals).measure(probs, labels))


def netcal_mce(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> float:
    from netcal.metrics import MCE

    return float(MCE(bins=n_bins).measure(probs, labels))


def netcal_dece(scores: np.ndarray, matched: np.ndarray, n_bins: int) -> float:
    from netcal.metrics import ECE

    return float(ECE(bins=n_bins, detection=True).measure(scores.reshape(-1, 1), matched.astype(np.int64)))
