"""Which model outputs are what, and logging a batch of them through the SDK."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import numpy as np

from monitor.adapters._resources import CallUsage
from monitor.sdk import Client

log = logging.getLogger("monitor.adapters")

Cohort = Mapping[str, str | int | float | bool]


@dataclass(frozen=True, slots=True)
class Outputs:
    """Names of the model outputs to log.

    Classification: ``probabilities`` (softmax outputs) or ``logits`` (softmax is applied to the
    logged copy), shape ``(N, classes)``. Detection: ``boxes`` ``(N, K, 4)`` or ``(K, 4)`` x1 y1
    x2 y2, ``box_classes`` and ``box_scores`` ``(N, K)`` or ``(K,)``. ``embedding``: any output
    with N rows, flattened per row (e.g. a pooled feature map).
    """

    task: Literal["classification", "detection"] = "classification"
    probabilities: str | None = None
    logits: str | None = None
    embedding: str | None = None
    boxes: str | None = None
    box_classes: str | None = None
    box_scores: str | None = None

    def __post_init__(self) -> None:
        if self.task == "classification":
            if (self.probabilities is None) == (self.logits is None):
                raise ValueError("a classifier needs exactly one of probabilities= or logits= (an output name)")
        elif self.task == "detection":
            if None in (self.boxes, self.box_classes, self.box_scores):
                raise ValueError("a detector needs boxes=, box_classes= and box_scores= (output names)")
        else:
            raise ValueError(f"task must be 'classification' or 'detection', not {self.task!r}")

    def names(self) -> list[str]:
        """The output names that must be fetched to log."""
        fields = (self.probabilities, self.logits, self.embedding, self.boxes, self.box_classes, self.box_scores)
        return [n for n in fields if n is not None]


class _Warn:
    def __init__(self) -> None:
        self._last = -1e9

    def __call__(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last > 60:
            self._last = now
            log.warning("cvmon adapter: outputs not logged: %s", exc)


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def log_outputs(
    client: Client,
    spec: Outputs,
    named: Mapping[str, Any],
    *,
    latency_ms: float,
    cohort: Cohort | Sequence[Cohort] | None,
    prediction_ids: Sequence[str] | None,
    timestamp: float | datetime | None,
    warn: _Warn,
    usage: CallUsage | None = None,
) -> list[str]:
    """Log one prediction per row (at ``timestamp``, default now), each with the call's ``usage``
    and the batch size; returns their ids. Never raises: the inference must go on."""
    try:
        return _log(client, spec, named, latency_ms, cohort, prediction_ids, timestamp, usage)
    except (ValueError, KeyError, TypeError) as exc:
        warn(exc)
        return []


def _log(
    client: Client,
    spec: Outputs,
    named: Mapping[str, Any],
    latency_ms: float,
    cohort: Cohort | Sequence[Cohort] | None,
    prediction_ids: Sequence[str] | None,
    timestamp: float | datetime | None,
    usage: CallUsage | None,
) -> list[str]:
    if spec.task == "classification":
        if spec.probabilities is not None:
            probs = np.asarray(named[spec.probabilities])
        else:
            assert spec.logits is not None  # Outputs checks one of the two is set
            probs = softmax(np.asarray(named[spec.logits]))
        probs = probs.reshape(-1, probs.shape[-1])
        n = len(probs)
    else:
        # arrays (N, K, ...) for a padded batch, (K, ...) for one image, or lists of per-image arrays
        assert spec.boxes is not None and spec.box_classes is not None and spec.box_scores is not None
        boxes, classes, scores = named[spec.boxes], named[spec.box_classes], named[spec.box_scores]
        if isinstance(boxes, np.ndarray) and boxes.ndim == 2:
            boxes, classes, scores = [boxes], [classes], [scores]
        n = len(boxes)
    emb = None
    if spec.embedding is not None and named.get(spec.embedding) is not None:
        emb = np.asarray(named[spec.embedding]).reshape(n, -1)
    if prediction_ids is not None and len(prediction_ids) != n:
        raise ValueError(f"{len(prediction_ids)} prediction_ids for a batch of {n}")
    cohorts: Sequence[Cohort | None] = [cohort] * n if cohort is None or isinstance(cohort, Mapping) else cohort
    resources = usage.resources(n) if usage is not None and n else None  # one object, shared by the call's rows
    ids = []
    for i in range(n):
        pid = prediction_ids[i] if prediction_ids is not None else None
        e = emb[i] if emb is not None else None
        if spec.task == "classification":
            ids.append(client.log_classification(probs[i], latency_ms=latency_ms, cohort=cohorts[i], embedding=e,
                                                 prediction_id=pid, timestamp=timestamp, resources=resources))  # fmt: skip
        else:
            ids.append(client.log_detection(boxes[i], classes[i], scores[i], latency_ms=latency_ms, cohort=cohorts[i],
                                            embedding=e, prediction_id=pid, timestamp=timestamp, resources=resources))  # fmt: skip
    return ids
