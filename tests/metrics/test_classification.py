"""Classification metrics against scikit-learn, and the merge of their count state."""

from __future__ import annotations

import math

import numpy as np
import pytest

from monitor.metrics import ClassificationState, classification_metrics, classification_state
from testkit.synth import classification_like


def _case(seed: int, n: int, c: int, *, missing: int = 0, ties: bool = False, dtype=np.float32):
    labels, probs = classification_like(seed, n, c, dtype=dtype)
    if missing:  # classes that never occur as labels
        labels = labels % (c - missing)
    if ties:  # coarse probabilities tie often, also with the true label (top-k order matters)
        probs = np.round(probs * 8) / 8
        probs[probs.sum(axis=1) == 0, 0] = 1.0
    return labels, probs.astype(dtype)


CASES = [
    pytest.param({"seed": 1, "n": 500, "c": 5}, id="5-classes"),
    pytest.param({"seed": 2, "n": 2000, "c": 30}, id="30-classes"),
    pytest.param({"seed": 3, "n": 300, "c": 12, "missing": 4}, id="absent-labels"),
    pytest.param({"seed": 4, "n": 400, "c": 8, "ties": True}, id="tied-probabilities"),
    pytest.param({"seed": 5, "n": 3, "c": 6}, id="three-samples"),
    pytest.param({"seed": 6, "n": 1, "c": 4}, id="one-sample"),
    pytest.param({"seed": 7, "n": 1000, "c": 3, "dtype": np.float64}, id="float64"),
    pytest.param({"seed": 8, "n": 250, "c": 25, "missing": 10, "ties": True}, id="absent-and-tied"),
]


def _nan_or(value):
    return math.nan if value is None else value


@pytest.mark.parametrize("case", CASES)
def test_classification_equals_scikit_learn(case):
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        precision_recall_fscore_support,
        top_k_accuracy_score,
    )

    labels, probs = _case(**case)
    c = probs.shape[1]
    pred = probs.argmax(axis=1)
    m = classification_metrics(classification_state(labels, probs), top_k=(1, 3, 5))

    assert m.accuracy == accuracy_score(labels, pred)
    assert (m.confusion_matrix == confusion_matrix(labels, pred, labels=np.arange(c))).all()
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=np.arange(c), zero_division=np.nan)
    for i, cm in enumerate(m.per_class):
        np.testing.assert_equal([_nan_or(cm.precision), _nan_or(cm.recall), _nan_or(cm.f1)], [p[i], r[i], f[i]])
        assert cm.support == s[i]
    for average, ours in (("macro", m.macro), ("weighted", m.weighted)):
        theirs = precision_recall_fscore_support(
            labels, pred, labels=np.arange(c), average=average, zero_division=np.nan
        )
        np.testing.assert_allclose(
            [_nan_or(ours.precision), _nan_or(ours.recall), _nan_or(ours.f1)], theirs[:3], rtol=0, atol=1e-12
        )
    for k in (1, 3, 5):
        if k < c:
            assert m.top_k_accuracy[k] == top_k_accuracy_score(labels, probs, k=k, labels=np.arange(c))
        else:  # scikit-learn warns and returns a perfect score
            assert m.top_k_accuracy[k] == 1.0


def test_predicted_classes_only_have_no_top_k():
    labels, probs = _case(seed=9, n=200, c=6)
    from_classes = classification_state(labels, predictions=probs.argmax(axis=1), num_classes=6)
    from_probs = classification_state(labels, probs)
    a = classification_metrics(from_classes)
    b = classification_metrics(from_probs)
    assert a.top_k_accuracy == {1: None, 5: None}
    assert (a.accuracy, a.per_class, a.macro, a.weighted) == (b.accuracy, b.per_class, b.macro, b.weighted)
    # a window that mixes both cannot give a top-k for all its samples
    assert classification_metrics(ClassificationState.merge(from_classes, from_probs)).top_k_accuracy[5] is None


def test_undefined_values_are_none_never_zero():
    # class 2 never occurs and is never predicted; class 1 occurs but is never predicted
    m = classification_metrics(classification_state([0, 1, 0], predictions=[0, 0, 0], num_classes=3))
    assert m.per_class[2].precision is None and m.per_class[2].recall is None and m.per_class[2].f1 is None
    assert m.per_class[1].precision is None and m.per_class[1].recall == 0.0 and m.per_class[1].f1 == 0.0
    empty = classification_metrics(ClassificationState.empty(3))
    assert empty.accuracy is None and empty.macro.f1 is None and empty.top_k_accuracy[1] is None


@pytest.mark.parametrize("parts", [pytest.param(p, id=f"{p}-parts") for p in (2, 7, 50)])
def test_merged_parts_equal_the_whole(parts):
    labels, probs = _case(seed=10, n=3000, c=40, ties=True)
    whole = classification_state(labels, probs)
    rng = np.random.default_rng(parts)
    where = rng.integers(0, parts, size=labels.size)
    states = [classification_state(labels[where == p], probs[where == p]) for p in range(parts)]
    rng.shuffle(states)
    merged = ClassificationState.merge(*states)
    assert merged.to_bytes() == whole.to_bytes()
    assert (
        ClassificationState.merge(
            ClassificationState.merge(*states[:1]), ClassificationState.merge(*states[1:])
        ).to_bytes()
        == whole.to_bytes()
    )
    back = ClassificationState.from_bytes(whole.to_bytes())
    assert back.to_bytes() == whole.to_bytes()
    assert repr(classification_metrics(back)) == repr(classification_metrics(whole))


@pytest.mark.parametrize(
    ("labels", "probs", "message"),
    [
        pytest.param([0, 3], [[0.5, 0.5, 0], [0.2, 0.3, 0.5]], r"labels\[1\] = 3", id="label-out-of-range"),
        pytest.param([0, 1], [[0.5, 0.5], [1.2, -0.2]], "row 1", id="logits-not-probabilities"),
        pytest.param([0, 1], [[0.5, 0.5], [np.nan, 0.5]], "row 1", id="nan"),
        pytest.param([0], [[0.5, 0.5], [0.5, 0.5]], "1 values but there are 2 rows", id="length-mismatch"),
        pytest.param([0.5, 1], [[0.5, 0.5], [0.5, 0.5]], "integer", id="fractional-labels"),
        pytest.param([0, 1], [0.5, 0.5], "N × C", id="one-dimensional"),
    ],
)
def test_bad_input_is_refused_with_a_reason(labels, probs, message):
    with pytest.raises(ValueError, match=message):
        classification_state(np.asarray(labels), np.asarray(probs, dtype=np.float32))


def test_states_of_different_class_counts_do_not_merge():
    with pytest.raises(ValueError, match="classes"):
        ClassificationState.merge(ClassificationState.empty(3), ClassificationState.empty(4))


def test_negative_zero_is_a_valid_probability():
    from monitor.metrics import probability_states

    labels, probs = _case(seed=11, n=300, c=6)
    probs[::3, 2] = 0.0
    flipped = probs.copy()
    flipped[::3, 2] = -0.0
    a = probability_states(labels, probs, classwise=True)
    b = probability_states(labels, flipped, classwise=True)
    assert [s.to_bytes() for s in a] == [s.to_bytes() for s in b]


def test_widen_equals_counting_with_the_longer_class_list():
    """A model gained classes: old hours widened equal the same samples counted over the new list."""
    rng = np.random.default_rng(5)
    labels = rng.integers(4, size=300)
    predicted = rng.integers(4, size=300)
    old = classification_state(labels, predictions=predicted, num_classes=4)
    wide = classification_state(labels, predictions=predicted, num_classes=6)
    widened = old.widen(6)
    assert widened.num_classes == 6
    assert np.array_equal(widened.cells, wide.cells) and np.array_equal(widened.cell_counts, wide.cell_counts)
    assert old.widen(4) is old
    with pytest.raises(ValueError, match="narrow"):
        old.widen(3)
