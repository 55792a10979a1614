"""Domain-classifier drift: can a classifier tell the current window from the reference?"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
from numpy.typing import ArrayLike

from detectors.base import (
    Detector,
    DriftResult,
    FloatArray,
    as_matrix,
    bounded_sample,
    check_positive,
    decode_array,
    encode_array,
    group_masks,
    permutation_p_value,
    rng_for,
    stored_precision,
)
from detectors.floor import EffectFloor

_FIT, _CURRENT, _PERMUTE = 0, 2, 3


class ClassifierDrift(Detector):
    """Cross-fitted AUC of a linear domain classifier, with a permutation p-value.

    The classifier is a ridge-regularised least-squares discriminant (equivalent to regularised
    linear discriminant analysis) trained to separate reference (0) from current (1). Every
    sample is scored by a model fitted on the other ``n_folds - 1`` folds, and the score is the
    AUC of those out-of-fold scores: 0.5 when the windows cannot be told apart.

    The null distribution comes from refitting the *whole* procedure on randomly relabelled
    samples. That is cheap here because the normal equations' Gram matrices do not depend on the
    labels: each fold's system is factorised once and solved for all ``n_permutations + 1``
    label vectors together. The test is therefore an exact permutation test of the cross-fitted
    AUC, with no assumption on how the AUC is distributed.

    Trade-off: a linear classifier misses shifts that only change non-linear structure (MMD
    catches those); in exchange it is fast, deterministic and tells which direction moved.

    Parameters
    ----------
    alpha
        Test level: drift when ``p_value <= alpha``.
    seed
        Seed of the reservoir sample, the fold assignment and the permutations.
    n_permutations
        Number of relabellings for the p-value ``(1 + #{AUC_perm >= AUC_obs}) / (1 + B)``.
    n_folds
        Number of cross-fitting folds (at least 2).
    ridge
        L2 penalty, relative to the average feature variance (scale-free).
    max_reference, max_current
        Bounds on the rows compared (uniform samples); the summary stores the reference sample
        as float32.
    """

    method = "classifier"

    def __init__(
        self,
        *,
        alpha: float = 0.05,
        seed: int = 0,
        floor: EffectFloor | None = None,
        n_permutations: int = 100,
        n_folds: int = 5,
        ridge: float = 1.0,
        max_reference: int = 5000,
        max_current: int = 5000,
    ) -> None:
        super().__init__(alpha=alpha, seed=seed, floor=floor)
        check_positive("n_permutations", n_permutations)
        check_positive("max_reference", max_reference)
        check_positive("max_current", max_current)
        if n_folds < 2:
            raise ValueError(f"n_folds must be at least 2, got {n_folds}")
        if not ridge > 0:
            raise ValueError(f"ridge must be positive, got {ridge}")
        self.n_permutations = n_permutations
        self.n_folds = n_folds
        self.ridge = ridge
        self.max_reference = max_reference
        self.max_current = max_current
        self._reference: FloatArray | None = None

    def params(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "seed": self.seed,
            "n_permutations": self.n_permutations,
            "n_folds": self.n_folds,
            "ridge": self.ridge,
            "max_reference": self.max_reference,
            "max_current": self.max_current,
        }

    @property
    def is_fitted(self) -> bool:
        return self._reference is not None

    def _fit(self, reference: ArrayLike) -> Self:
        """Keep a bounded sample of ``reference`` (n × d), at the float32 precision it is stored in."""
        x = as_matrix(reference, "reference", min_rows=self.n_folds)
        sample = bounded_sample(x, self.max_reference, rng_for(self.seed, _FIT))
        self._reference = stored_precision(sample)
        return self

    def _score(self, current: ArrayLike) -> DriftResult:
        """Cross-fitted AUC of reference vs ``current`` (n × d) and its permutation p-value."""
        self._check_fitted()
        assert self._reference is not None
        y = as_matrix(current, "current", min_rows=self.n_folds)
        if y.shape[1] != self._reference.shape[1]:
            raise ValueError(f"current has {y.shape[1]} features; the reference has {self._reference.shape[1]}")
        y = stored_precision(bounded_sample(y, self.max_current, rng_for(self.seed, _CURRENT)))
        m, n = len(self._reference), len(y)
        rng = rng_for(self.seed, _PERMUTE)
        # Columns: the observed labels (current = 1), then the relabellings.
        labels = 1.0 - group_masks(m, n, self.n_permutations, rng)
        scores = _cross_fitted_scores(np.vstack([self._reference, y]), labels.T, self.n_folds, self.ridge, rng)
        aucs = _auc_rows(scores.T, labels)
        observed = float(aucs[0])
        p_value = permutation_p_value(observed, aucs[1:])
        return DriftResult(
            method=self.method,
            score=observed,
            p_value=p_value,
            threshold=self.alpha,
            significant=p_value <= self.alpha,
            effect_size=observed,
            n_reference=m,
            n_current=n,
            details={"n_folds": self.n_folds, "n_permutations": self.n_permutations},
        )

    def _summary(self) -> dict[str, Any]:
        assert self._reference is not None
        return {"sample": encode_array(self._reference)}

    def _load_summary(self, summary: Mapping[str, Any]) -> None:
        sample = decode_array(summary["sample"])
        if sample.ndim != 2:
            raise ValueError("sample must be 2-D")
        self._reference = sample


def _cross_fitted_scores(
    x: FloatArray, labels: FloatArray, n_folds: int, ridge: float, rng: np.random.Generator
) -> FloatArray:
    """Out-of-fold ridge scores for every column of ``labels`` (N × L), shape (N × L)."""
    n, d = x.shape
    # Centring and the intercept column use only pooled, label-free quantities, so every label
    # vector sees the same design: the permutation test stays exact.
    design = np.hstack([x - x.mean(axis=0), np.ones((n, 1))])
    assignment = rng.permutation(n) % n_folds
    folds = [np.flatnonzero(assignment == k) for k in range(n_folds)]
    # Per-fold Gram matrices in float32 (they dominate the cost); any label-free rounding is the
    # same for every label vector, so the permutation test stays exact. X'y per fold once, too:
    # each training set's products are the total minus its held-out fold.
    design32 = design.astype(np.float32)
    grams = [(design32[f].T @ design32[f]).astype(np.float64) for f in folds]
    products = [design[f].T @ labels[f] for f in folds]
    total_gram = sum(grams[1:], grams[0])
    total_product = sum(products[1:], products[0])
    penalty = ridge * float(np.trace(total_gram[:d, :d])) / max(d, 1) / n
    scores = np.empty_like(labels)
    for k, held_out in enumerate(folds):
        gram = total_gram - grams[k]
        gram[np.arange(d), np.arange(d)] += penalty * (n - len(held_out))  # the intercept is not penalised
        coef = np.linalg.solve(gram, total_product - products[k])
        scores[held_out] = design[held_out] @ coef
    return scores


def _auc_rows(scores: FloatArray, labels: FloatArray) -> FloatArray:
    """Row-wise ROC AUC (Mann–Whitney with average ranks for ties) of ``scores`` for 0/1 ``labels``."""
    from scipy.stats import rankdata

    ranks = rankdata(scores, axis=1)
    positives = labels.sum(axis=1)
    negatives = labels.shape[1] - positives
    return ((ranks * labels).sum(axis=1) - positives * (positives + 1) / 2) / (positives * negatives)
