"""Label-free performance estimates from calibrated confidences (in the spirit of NannyML's CBPE).

Labels arrive days late; a model's own confidences, once calibrated on a labelled reference
window, say how often it is right *now*. If ``P(correct | confidence)`` is calibrated, the
expected accuracy of a window is the mean calibrated confidence, and expected per-class
precision and recall follow from the calibrated class probabilities.

Where it holds and where it breaks:

* **Covariate shift** (the inputs move, the labelling rule does not: another camera mix, more
  hard cases) keeps ``P(y | x)`` and so the calibration map, as long as the new inputs stay in
  regions the model has seen: the estimate tracks the realised accuracy.
* **Concept shift** (the same inputs now mean another class, e.g. a relabelled category) changes
  ``P(y | x)`` without touching the confidences: the estimate stays where it was while the
  realised accuracy drops. Only labels reveal it; export the estimate next to the realised
  value and alert on their gap once labels arrive.
* Inputs far from the reference (strong corruptions) make most models over-confident: the
  calibration learned on the reference no longer holds and the estimate is optimistic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import FloatArray, NotFittedError, SummaryError, as_labels, decode_array, encode_array

Calibration = Literal["temperature", "isotonic"]
# The smallest positive float: probabilities of exactly 0 (float underflow in a softmax) get a
# finite logarithm without shifting any representable probability.
_TINY = np.finfo(np.float64).tiny


@dataclass(frozen=True)
class AccuracyEstimate:
    """Estimated classification performance of an unlabelled window.

    Attributes
    ----------
    accuracy
        Expected share of correct predictions.
    precision
        Per class: expected share of predictions of that class that are correct; ``None`` when
        the window has no prediction of it (undefined, never 0).
    recall
        Per class: expected share of the class's samples predicted as it; ``None`` when the
        class is expected to be absent.
    n
        Number of predictions in the window.
    calibration
        ``"temperature"`` or ``"isotonic"``.
    """

    accuracy: float
    precision: tuple[float | None, ...]
    recall: tuple[float | None, ...]
    n: int
    calibration: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict, to be stored next to the realised value once labels arrive."""
        return {
            "accuracy": self.accuracy,
            "precision": list(self.precision),
            "recall": list(self.recall),
            "n": self.n,
            "calibration": self.calibration,
        }


class LabelFreeAccuracy:
    """Estimate accuracy and per-class precision / recall of a classifier without labels.

    Parameters
    ----------
    calibration
        ``"temperature"``: one temperature ``T`` rescales the log-probabilities, fitted by
        maximum likelihood on the reference (Guo et al. 2017); keeps the ranking and the
        predicted class, needs few labels. ``"isotonic"``: a monotone map of the top-label
        confidence to ``P(correct)`` (PAV); more flexible, needs more labels; the other classes
        share the remaining probability in their original proportions.
    """

    def __init__(self, *, calibration: Calibration = "temperature") -> None:
        if calibration not in ("temperature", "isotonic"):
            raise ValueError(f"calibration must be 'temperature' or 'isotonic', got {calibration!r}")
        self.calibration: Calibration = calibration
        self._temperature: float | None = None
        self._isotonic: tuple[FloatArray, FloatArray] | None = None
        self._n_classes = 0

    @property
    def is_fitted(self) -> bool:
        return self._n_classes > 0

    def fit(self, probabilities: ArrayLike, labels: ArrayLike) -> Self:
        """Calibrate on a labelled reference window.

        Parameters
        ----------
        probabilities
            ``(n, k)`` predicted class probabilities, rows summing to 1.
        labels
            ``(n,)`` true class indices.
        """
        probs = _probabilities(probabilities)
        y = as_labels(labels, "labels")
        if len(y) != len(probs):
            raise ValueError(f"{len(y)} labels for {len(probs)} predictions")
        if y.max() >= probs.shape[1]:
            raise ValueError(f"label {y.max()} is outside the {probs.shape[1]} classes")
        if self.calibration == "temperature":
            self._temperature = _fit_temperature(np.log(np.maximum(probs, _TINY)), y)
        else:
            from sklearn.isotonic import IsotonicRegression

            top = probs.max(axis=1)
            correct = (probs.argmax(axis=1) == y).astype(np.float64)
            iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(top, correct)
            self._isotonic = (np.asarray(iso.X_thresholds_, np.float64), np.asarray(iso.y_thresholds_, np.float64))
        self._n_classes = probs.shape[1]
        return self

    def calibrated(self, probabilities: ArrayLike) -> FloatArray:
        """Calibrated class probabilities ``(n, k)``; the predicted class (argmax) is unchanged."""
        self._check_fitted()
        probs = _probabilities(probabilities)
        if probs.shape[1] != self._n_classes:
            raise ValueError(f"{probs.shape[1]} classes; the calibration has {self._n_classes}")
        if self._temperature is not None:
            logits = np.log(np.maximum(probs, _TINY)) / self._temperature
            logits -= logits.max(axis=1, keepdims=True)
            out = np.exp(logits)
            return np.asarray(out / out.sum(axis=1, keepdims=True), dtype=np.float64)
        assert self._isotonic is not None
        rows = np.arange(len(probs))
        predicted = probs.argmax(axis=1)
        top = probs[rows, predicted]
        top_cal = np.interp(top, *self._isotonic)
        rest = 1.0 - top
        # Spread 1 - P(correct) over the other classes in their original proportions (evenly if
        # the model put all its mass on the top class).
        others = np.where(rest[:, None] > 0, probs / np.where(rest > 0, rest, 1.0)[:, None], 1.0 / (probs.shape[1] - 1))
        out = others * (1.0 - top_cal)[:, None]
        out[rows, predicted] = top_cal
        return np.asarray(out, dtype=np.float64)

    def estimate(self, probabilities: ArrayLike) -> AccuracyEstimate:
        """Expected accuracy, precision and recall of an unlabelled window of ``(n, k)`` probabilities."""
        probs = _probabilities(probabilities)
        cal = self.calibrated(probs)
        rows = np.arange(len(probs))
        predicted = probs.argmax(axis=1)
        p_correct = cal[rows, predicted]
        k = self._n_classes
        n_predicted = np.bincount(predicted, minlength=k)
        expected_tp = np.bincount(predicted, weights=p_correct, minlength=k)
        expected_support = cal.sum(axis=0)
        precision = tuple(float(t / c) if c > 0 else None for t, c in zip(expected_tp, n_predicted, strict=True))
        recall = tuple(float(t / s) if s > 0 else None for t, s in zip(expected_tp, expected_support, strict=True))
        return AccuracyEstimate(
            accuracy=float(p_correct.mean()),
            precision=precision,
            recall=recall,
            n=len(probs),
            calibration=self.calibration,
        )

    def to_dict(self) -> dict[str, Any]:
        """The fitted calibration as a JSON-safe dict (one temperature, or the isotonic knots)."""
        self._check_fitted()
        data: dict[str, Any] = {"calibration": self.calibration, "n_classes": self._n_classes}
        if self._temperature is not None:
            data["temperature"] = self._temperature
        else:
            assert self._isotonic is not None
            data["x"], data["y"] = encode_array(self._isotonic[0], "float64"), encode_array(self._isotonic[1], "float64")
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a fitted estimator from :meth:`to_dict` output."""
        try:
            est = cls(calibration=data["calibration"])
            est._n_classes = int(data["n_classes"])
            if est.calibration == "temperature":
                est._temperature = float(data["temperature"])
            else:
                est._isotonic = (decode_array(data["x"]), decode_array(data["y"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SummaryError(f"invalid label-free estimator summary: {exc}") from exc
        return est

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("LabelFreeAccuracy is not fitted; call fit(probabilities, labels) first")


class LabelFreeDetectionPrecision:
    """Estimate a detector's precision at its operating threshold from calibrated box scores.

    On a labelled reference, each box above the threshold is a true positive or not (matched to
    ground truth at IoU ≥ 0.5, as ``monitor.metrics`` matches). An isotonic map from box score
    to ``P(true positive)`` is fitted; the precision of an unlabelled window is then the mean
    calibrated score of its boxes at or above ``threshold``. Same limits as
    :class:`LabelFreeAccuracy`: it follows changes in *which* scores occur, not a change in what a
    given score means.

    Parameters
    ----------
    threshold
        The operating threshold: boxes scored below it are not counted as predictions.
    """

    def __init__(self, *, threshold: float = 0.5) -> None:
        self.threshold = float(threshold)
        self._knots: tuple[FloatArray, FloatArray] | None = None

    @property
    def is_fitted(self) -> bool:
        return self._knots is not None

    def fit(self, scores: ArrayLike, true_positive: ArrayLike) -> Self:
        """Fit ``P(true positive | score)`` on reference boxes at or above the threshold.

        Parameters
        ----------
        scores
            ``(n,)`` box scores of all reference images pooled.
        true_positive
            ``(n,)`` booleans: the box was matched to a ground-truth object.
        """
        from sklearn.isotonic import IsotonicRegression

        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        tp = np.asarray(true_positive, dtype=bool).reshape(-1)
        if len(s) != len(tp):
            raise ValueError(f"{len(tp)} match flags for {len(s)} scores")
        kept = s >= self.threshold
        if np.count_nonzero(kept) < 2:
            raise ValueError("fewer than two reference boxes at or above the threshold")
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(s[kept], tp[kept].astype(np.float64))
        self._knots = (np.asarray(iso.X_thresholds_, np.float64), np.asarray(iso.y_thresholds_, np.float64))
        return self

    def estimate(self, scores: ArrayLike) -> float | None:
        """Expected precision of the boxes in ``scores`` at or above the threshold (``None`` if there are none)."""
        if self._knots is None:
            raise NotFittedError("LabelFreeDetectionPrecision is not fitted; call fit(scores, true_positive) first")
        s = np.asarray(scores, dtype=np.float64).reshape(-1)
        kept = s[s >= self.threshold]
        return float(np.interp(kept, *self._knots).mean()) if kept.size else None

    def to_dict(self) -> dict[str, Any]:
        """The fitted score calibration as a JSON-safe dict."""
        if self._knots is None:
            raise NotFittedError("LabelFreeDetectionPrecision is not fitted")
        return {"threshold": self.threshold, "x": encode_array(self._knots[0], "float64"), "y": encode_array(self._knots[1], "float64")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuild a fitted estimator from :meth:`to_dict` output."""
        try:
            est = cls(threshold=float(data["threshold"]))
            est._knots = (decode_array(data["x"]), decode_array(data["y"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise SummaryError(f"invalid detection-precision summary: {exc}") from exc
        return est


def _probabilities(values: ArrayLike) -> FloatArray:
    probs = np.asarray(values, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2 or len(probs) == 0:
        raise ValueError(f"probabilities must be (n, k) with k >= 2, got shape {probs.shape}")
    if not np.isfinite(probs).all() or probs.min() < 0:
        raise ValueError("probabilities must be finite and non-negative")
    return probs


def _fit_temperature(log_probs: FloatArray, labels: ArrayLike) -> float:
    """Maximum-likelihood temperature: minimise the NLL of softmax(log p / T) over log T."""
    from scipy.optimize import minimize_scalar
    from scipy.special import logsumexp

    y = np.asarray(labels)
    rows = np.arange(len(y))

    def nll(log_t: float) -> float:
        z = log_probs / np.exp(log_t)
        return float((logsumexp(z, axis=1) - z[rows, y]).mean())

    # T between 1/20 and 20 covers any model worth calibrating; the optimum is interior in practice.
    result = minimize_scalar(nll, bounds=(-3.0, 3.0), method="bounded")
    return float(np.exp(result.x))
