"""Active learning: which unlabelled predictions are worth a labeller's time. Pure numpy.

Scores (higher: label it first):

==================  ==============================================================================
strategy            score of a prediction
==================  ==============================================================================
least_confidence    1 − top probability (detection: the box closest to 0.5, as 1 − |2s − 1|)
margin              1 − (top probability − second probability)
entropy             Shannon entropy of the probabilities over log(classes), in [0, 1]
disagreement        between two versions on the same input (``input_hash``): total variation
                    distance of the probabilities (detection: 1 − F1 of the boxes matched at IoU 0.5)
drift               mean distance of the embedding to its 5 nearest reference embeddings (inputs
                    farthest from what the version was checked on)
false_positive      detection: the box above the operating threshold most likely wrong — scored
                    closest to the threshold, or overlapping (IoU ≥ 0.5) a box of another class
random              a uniform draw (the baseline of bench/active.py)
==================  ==============================================================================

:func:`select` then takes the best within per-class budgets, optionally spread over the embedding
space: from a pool of the ``pool_factor × size`` best candidates, k-center greedy (Sener &
Savarese 2018, "core-set") picks the most distant ones in turn, starting from the best score, so
a queue is not a hundred near-copies of one hard image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
STRATEGIES: Final = ("least_confidence", "margin", "entropy", "disagreement", "drift", "false_positive", "random")
#: Strategies that need embeddings (diversity needs them too, but goes without when they are missing).
NEEDS_EMBEDDINGS: Final = frozenset({"drift"})
CLASSIFICATION_ONLY: Final = frozenset({"margin", "entropy"})
DETECTION_ONLY: Final = frozenset({"false_positive"})


def least_confidence(probabilities: Array) -> Array:
    return 1.0 - probabilities.max(axis=1)


def margin(probabilities: Array) -> Array:
    if probabilities.shape[1] < 2:
        return np.zeros(len(probabilities))
    top2 = -np.partition(-probabilities, 1, axis=1)[:, :2]
    return 1.0 - (top2[:, 0] - top2[:, 1])


def entropy(probabilities: Array) -> Array:
    p = np.clip(probabilities, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1)
    k = probabilities.shape[1]
    return h / np.log(k) if k > 1 else np.zeros(len(p))


def box_uncertainty(scores: Sequence[Array]) -> Array:
    """Detection least confidence: per image, the box scored closest to 0.5 (0 without boxes)."""
    return np.array([float((1.0 - np.abs(2.0 * s - 1.0)).max()) if s.size else 0.0 for s in scores])


def total_variation(a: Array, b: Array) -> Array:
    return 0.5 * np.abs(a - b).sum(axis=1)


def iou_matrix(a: Array, b: Array) -> Array:
    """IoU of every box of ``a`` (n, 4) with every box of ``b`` (m, 4), x1 y1 x2 y2."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_disagreement(a: tuple[Array, NDArray[np.int32]], b: tuple[Array, NDArray[np.int32]], threshold: float) -> float:
    """1 − F1 of two versions' boxes of one image (above ``threshold``), matched greedily by IoU ≥ 0.5
    within a class; 0 when neither version found anything."""
    (boxes_a, classes_a), (boxes_b, classes_b) = a, b
    if not len(boxes_a) and not len(boxes_b):
        return 0.0
    ious = iou_matrix(boxes_a, boxes_b)
    ious[classes_a[:, None] != classes_b[None, :]] = 0.0
    matched = 0
    while ious.size and ious.max() >= 0.5:
        i, j = np.unravel_index(int(ious.argmax()), ious.shape)
        ious[i, :] = 0.0
        ious[:, j] = 0.0
        matched += 1
    return 1.0 - 2.0 * matched / (len(boxes_a) + len(boxes_b))


def false_positive(boxes: Array, classes: NDArray[np.int32], scores: Array, threshold: float) -> float:
    """How likely the image holds a false positive among its boxes at or above ``threshold``."""
    kept = scores >= threshold
    if not kept.any():
        return 0.0
    near = 1.0 - (scores[kept] - threshold) / max(1e-9, 1.0 - threshold)
    score = float(near.max())
    ious = iou_matrix(boxes[kept], boxes[kept])
    other = classes[kept][:, None] != classes[kept][None, :]
    if other.any():
        score = max(score, float((ious * other).max()))
    return score


def distance_to_reference(embeddings: Array, reference: Array, *, k: int = 5, chunk: int = 1024) -> Array:
    """Mean Euclidean distance of each embedding to its ``k`` nearest reference embeddings."""
    if not len(reference):
        return np.zeros(len(embeddings))
    k = min(k, len(reference))
    ref_sq = (reference**2).sum(axis=1)
    out = np.empty(len(embeddings))
    for start in range(0, len(embeddings), chunk):
        x = embeddings[start : start + chunk]
        d2 = np.maximum((x**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * x @ reference.T, 0.0)
        nearest = np.partition(d2, k - 1, axis=1)[:, :k]
        out[start : start + chunk] = np.sqrt(nearest).mean(axis=1)
    return out


def kcenter_greedy(embeddings: Array, k: int, *, first: int = 0, allowed: NDArray[np.bool_] | None = None) -> list[int]:
    """k-center greedy: start at ``first`` and repeatedly add the point farthest from those chosen.
    ``allowed`` masks points that may not be chosen (used by the class budgets between calls)."""
    n = len(embeddings)
    if n == 0 or k <= 0:
        return []
    chosen = [first]
    nearest = np.sqrt(((embeddings - embeddings[first]) ** 2).sum(axis=1))
    while len(chosen) < min(k, n):
        candidates = np.where(allowed if allowed is not None else True, nearest, -np.inf)
        candidates[chosen] = -np.inf
        j = int(np.argmax(candidates))
        if not np.isfinite(candidates[j]):
            break
        chosen.append(j)
        nearest = np.minimum(nearest, np.sqrt(((embeddings - embeddings[j]) ** 2).sum(axis=1)))
    return chosen


def select(
    scores: Array,
    classes: NDArray[np.int64],
    size: int,
    *,
    budgets: Mapping[int, int] | None = None,
    per_class: int | None = None,
    embeddings: Array | None = None,
    pool_factor: int = 4,
) -> list[int]:
    """Indices of the chosen candidates, in the order labellers should take them.

    ``classes``: the class each candidate counts against (predicted class; -1 for none).
    ``budgets``: the most a class may take (class index -> count); ``per_class``: the same for every
    class without its own budget. ``embeddings`` (one row per candidate, or None): diversity by
    k-center greedy over the ``pool_factor × size`` best-scored candidates."""
    order = np.argsort(-scores, kind="stable")
    taken: dict[int, int] = {}

    def room(c: int) -> bool:
        cap = (budgets or {}).get(c, per_class)
        return cap is None or taken.get(c, 0) < cap

    if embeddings is None or size <= 1:
        out: list[int] = []
        for i in order:
            c = int(classes[i])
            if room(c):
                out.append(int(i))
                taken[c] = taken.get(c, 0) + 1
                if len(out) >= size:
                    break
        return out
    pool = order[: max(size, pool_factor * size)]
    points = embeddings[pool]
    # the pool's embeddings are scaled so that no dimension dominates the distances
    spread = points.std(axis=0)
    points = points / np.where(spread > 0, spread, 1.0)
    top = float(scores[pool].max()) if len(pool) else 0.0
    weight = scores[pool] / top if top > 0 else np.ones(len(pool))
    chosen: list[int] = []
    nearest = np.full(len(pool), np.inf)
    first = [j for j, p in enumerate(pool) if room(int(classes[p]))]
    if not first:
        return []
    j = first[0]  # the best-scored candidate first
    while True:
        c = int(classes[pool[j]])
        chosen.append(j)
        taken[c] = taken.get(c, 0) + 1
        if len(chosen) >= size:
            break
        nearest = np.minimum(nearest, np.sqrt(((points - points[j]) ** 2).sum(axis=1)))
        allowed = np.array([room(int(classes[p])) for p in pool])
        allowed[chosen] = False
        if not allowed.any():
            break
        # the farthest point, each distance weighted by the candidate's score (Sener & Savarese's
        # core-set on an uncertainty pool): coverage without giving up the hard images
        j = int(np.argmax(np.where(allowed, nearest * weight, -np.inf)))
    return [int(pool[j]) for j in chosen]
