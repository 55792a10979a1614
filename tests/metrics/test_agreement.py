"""Annotator agreement against its references: krippendorff (α, nominal), statsmodels (Fleiss' κ),
scikit-learn (Cohen's κ, accuracy on audited items); the merge of its count state."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np
import pytest

from monitor.metrics import AgreementState, agreement_metrics, agreement_state

TOL = 1e-9


@dataclass(frozen=True)
class Annotations:
    items: list[int]
    annotators: list[str]
    labels: list[int]
    audit: list[bool]
    num_classes: int
    num_annotators: int


def synth(
    seed: int,
    *,
    items: int,
    classes: int,
    annotators: int,
    per_item: tuple[int, int] = (1, 4),
    skill: float = 0.75,
    skew: float = 0.0,
    audit_rate: float = 0.0,
) -> Annotations:
    """Each item has a true class (skewed by ``skew``); each of a random subset of annotators says
    it with probability ``skill`` and a random class otherwise; some items get an audit."""
    rng = np.random.default_rng(seed)
    weights = np.exp(-skew * np.arange(classes))
    weights /= weights.sum()
    out = Annotations([], [], [], [], classes, annotators)
    for u in range(items):
        true = int(rng.choice(classes, p=weights))
        k = int(rng.integers(per_item[0], per_item[1] + 1))
        for a in rng.choice(annotators, size=min(k, annotators), replace=False).tolist():
            out.items.append(u * 7 + 3)  # ids need not be dense
            out.annotators.append(f"ann-{a:02d}")
            out.labels.append(true if rng.random() < skill else int(rng.integers(classes)))
            out.audit.append(False)
        if rng.random() < audit_rate:
            out.items.append(u * 7 + 3)
            out.annotators.append("auditor")
            out.labels.append(true)
            out.audit.append(True)
    return out


def state_of(data: Annotations, idx=None) -> AgreementState:
    idx = range(len(data.labels)) if idx is None else idx
    pick = lambda xs: [xs[i] for i in idx]  # noqa: E731
    return agreement_state(pick(data.items), pick(data.annotators), pick(data.labels),
                           num_classes=data.num_classes, audit=pick(data.audit))  # fmt: skip


def reliability(data: Annotations) -> tuple[np.ndarray, list[str]]:
    """Non-audit annotations as krippendorff's (annotators × items) matrix, NaN where missing."""
    names = sorted({a for a, audit in zip(data.annotators, data.audit, strict=True) if not audit})
    units = sorted(set(data.items))
    matrix = np.full((len(names), len(units)), np.nan)
    for u, a, y, audit in zip(data.items, data.annotators, data.labels, data.audit, strict=True):
        if not audit:
            matrix[names.index(a), units.index(u)] = y
    return matrix, names


CASES = [
    pytest.param({"seed": 1, "items": 200, "classes": 4, "annotators": 5}, id="5-annotators-sparse"),
    pytest.param({"seed": 2, "items": 500, "classes": 10, "annotators": 3, "per_item": (2, 3)}, id="10-classes"),
    pytest.param({"seed": 3, "items": 300, "classes": 2, "annotators": 2, "per_item": (1, 2)}, id="binary-two"),
    pytest.param(
        {"seed": 4, "items": 150, "classes": 6, "annotators": 8, "per_item": (1, 8), "skill": 0.4}, id="noisy-many"
    ),
    pytest.param({"seed": 5, "items": 400, "classes": 5, "annotators": 4, "skew": 1.5}, id="skewed-classes"),
    pytest.param({"seed": 6, "items": 100, "classes": 3, "annotators": 6, "skill": 0.98}, id="near-perfect"),
    pytest.param(
        {"seed": 7, "items": 60, "classes": 30, "annotators": 4, "per_item": (2, 4)}, id="30-classes-few-items"
    ),
    pytest.param({"seed": 8, "items": 250, "classes": 4, "annotators": 5, "audit_rate": 0.3}, id="with-audits"),
    pytest.param({"seed": 9, "items": 3, "classes": 3, "annotators": 3, "per_item": (2, 3)}, id="three-items"),
]


@pytest.mark.parametrize("case", CASES)
def test_krippendorff_alpha_equals_the_krippendorff_package(case):
    import krippendorff

    data = synth(**case)
    m = agreement_metrics(state_of(data))
    matrix, _ = reliability(data)
    theirs = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert m.krippendorff_alpha == pytest.approx(theirs, abs=TOL, rel=0)


@pytest.mark.parametrize("seed", range(10, 22))
def test_krippendorff_alpha_on_many_seeds(seed):
    import krippendorff

    rng = np.random.default_rng(seed)
    data = synth(seed, items=int(rng.integers(20, 400)), classes=int(rng.integers(2, 12)),
                 annotators=int(rng.integers(2, 9)), skill=float(rng.uniform(0.2, 0.95)),
                 skew=float(rng.uniform(0, 2)))  # fmt: skip
    matrix, _ = reliability(data)
    theirs = krippendorff.alpha(reliability_data=matrix, level_of_measurement="nominal")
    assert agreement_metrics(state_of(data)).krippendorff_alpha == pytest.approx(theirs, abs=TOL, rel=0)


def _fleiss_table(data: Annotations) -> np.ndarray:
    table = np.zeros((len(set(data.items)), data.num_classes))
    units = sorted(set(data.items))
    for u, y, audit in zip(data.items, data.labels, data.audit, strict=True):
        if not audit:
            table[units.index(u), y] += 1
    return table


@pytest.mark.parametrize(
    "case",
    [
        pytest.param({"seed": 30, "items": 300, "classes": 5, "annotators": 6, "per_item": (3, 3)}, id="3-of-6"),
        pytest.param(
            {"seed": 31, "items": 100, "classes": 2, "annotators": 2, "per_item": (2, 2)}, id="2-raters-binary"
        ),
        pytest.param(
            {"seed": 32, "items": 500, "classes": 12, "annotators": 10, "per_item": (5, 5), "skill": 0.5}, id="5-of-10"
        ),
        pytest.param(
            {"seed": 33, "items": 80, "classes": 4, "annotators": 4, "per_item": (4, 4), "skew": 2.0}, id="all-4-skewed"
        ),
        pytest.param(
            {"seed": 34, "items": 200, "classes": 3, "annotators": 3, "per_item": (3, 3), "audit_rate": 0.5},
            id="audits-ignored",
        ),
    ],
)
def test_fleiss_kappa_equals_statsmodels_with_equal_annotations_per_item(case):
    from statsmodels.stats.inter_rater import fleiss_kappa

    data = synth(**case)
    m = agreement_metrics(state_of(data))
    table = _fleiss_table(data)
    assert m.fleiss_kappa == pytest.approx(fleiss_kappa(table, method="fleiss"), abs=TOL, rel=0)
    # percent agreement is Fleiss' mean per-item agreement P̄ here (statsmodels' p_mean, by hand)
    k = case["per_item"][0]
    p_mean = ((table * table).sum(axis=1) - k) / (k * (k - 1))
    assert m.percent_agreement == pytest.approx(p_mean.mean(), abs=TOL, rel=0)


def test_fleiss_kappa_is_none_when_items_have_different_numbers_of_annotations():
    from statsmodels.stats.inter_rater import fleiss_kappa

    data = synth(40, items=100, classes=3, annotators=4, per_item=(2, 4))
    table = _fleiss_table(data)
    table = table[table.sum(axis=1) >= 2]
    with pytest.raises(AssertionError):  # the reference refuses it too
        fleiss_kappa(table)
    m = agreement_metrics(state_of(data))
    assert m.fleiss_kappa is None
    assert m.krippendorff_alpha is not None


@pytest.mark.parametrize("case", CASES)
def test_cohen_kappa_of_every_pair_equals_scikit_learn(case):
    from sklearn.metrics import accuracy_score, cohen_kappa_score

    data = synth(**case)
    m = agreement_metrics(state_of(data))
    matrix, names = reliability(data)
    expected = []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            both = ~np.isnan(matrix[i]) & ~np.isnan(matrix[j])
            if both.any():
                expected.append((names[i], names[j], int(both.sum()), matrix[i, both], matrix[j, both]))
    assert [(p.annotator_a, p.annotator_b, p.items) for p in m.pairs] == [e[:3] for e in expected]
    for pair, (_, _, _, a, b) in zip(m.pairs, expected, strict=True):
        assert pair.percent_agreement == accuracy_score(a, b)
        if len(set(a) | set(b)) == 1:
            assert pair.cohen_kappa is None  # scikit-learn warns and answers NaN
        else:
            assert pair.cohen_kappa == pytest.approx(cohen_kappa_score(a, b), abs=TOL, rel=0)


def test_percent_agreement_of_two_annotators_is_the_share_of_items_they_agree_on():
    from sklearn.metrics import accuracy_score

    data = synth(50, items=400, classes=5, annotators=2, per_item=(2, 2), skill=0.6)
    m = agreement_metrics(state_of(data))
    matrix, _ = reliability(data)
    assert m.percent_agreement == accuracy_score(matrix[0], matrix[1])
    assert m.disputed == int((matrix[0] != matrix[1]).sum())
    assert m.items == 400 and m.single == 0 and m.annotations == 800


@pytest.mark.parametrize("case", CASES)
def test_percent_and_specific_agreement_by_hand(case):
    data = synth(**case)
    m = agreement_metrics(state_of(data))
    per_item: dict[int, list[int]] = defaultdict(list)
    for u, y, audit in zip(data.items, data.labels, data.audit, strict=True):
        if not audit:
            per_item[u].append(y)
    pairable = {u: ys for u, ys in per_item.items() if len(ys) >= 2}
    n = sum(len(ys) for ys in pairable.values())
    o_cc = Counter()
    n_c = Counter()
    for ys in pairable.values():
        counts = Counter(ys)
        for c, k in counts.items():
            o_cc[c] += k * (k - 1) / (len(ys) - 1)
            n_c[c] += k
    assert m.items == len(pairable)
    assert m.single == sum(len(ys) == 1 for ys in per_item.values())
    assert m.annotations == n
    assert m.percent_agreement == pytest.approx(sum(o_cc.values()) / n, abs=TOL, rel=0)
    assert m.disputed == sum(len(set(ys)) > 1 for ys in pairable.values())
    for c, cls in enumerate(m.per_class):
        assert cls.values == n_c[c]
        assert cls.disputed == sum(c in ys and len(set(ys)) > 1 for ys in pairable.values())
        if n_c[c]:
            assert cls.specific_agreement == pytest.approx(o_cc[c] / n_c[c], abs=TOL, rel=0)
        else:
            assert cls.specific_agreement is None


def test_annotator_accuracy_on_audited_items_equals_scikit_learn():
    from sklearn.metrics import accuracy_score

    data = synth(60, items=500, classes=6, annotators=5, audit_rate=0.4, skill=0.7)
    m = agreement_metrics(state_of(data))
    reference = {u: y for u, y, audit in zip(data.items, data.labels, data.audit, strict=True) if audit}
    for a in m.annotators:
        rows = [(y, reference[u]) for u, who, y, audit in zip(data.items, data.annotators, data.labels, data.audit, strict=True)
                if who == a.annotator and not audit and u in reference]  # fmt: skip
        assert a.annotations == sum(
            1 for who, audit in zip(data.annotators, data.audit, strict=True) if who == a.annotator and not audit
        )
        assert a.audited == len(rows)
        if rows:
            assert a.accuracy == accuracy_score([r for _, r in rows], [y for y, _ in rows])
        else:
            assert a.accuracy is None
    assert sum(a.audited for a in m.annotators) > 100
    assert "auditor" not in {a.annotator for a in m.annotators}  # the reference is not a peer


def test_annotator_agreement_is_the_share_of_their_pairs_that_agree():
    data = synth(61, items=300, classes=4, annotators=4, per_item=(2, 4))
    m = agreement_metrics(state_of(data))
    for a in m.annotators:
        mine = [p for p in m.pairs if a.annotator in (p.annotator_a, p.annotator_b)]
        items = sum(p.items for p in mine)
        agree = sum(round(p.percent_agreement * p.items) for p in mine)
        assert a.agreement == pytest.approx(agree / items, abs=TOL, rel=0)


@pytest.mark.parametrize("parts", [2, 3, 7])
def test_merged_states_of_disjoint_items_equal_the_whole(parts):
    data = synth(70 + parts, items=300, classes=5, annotators=6, audit_rate=0.2)
    whole = state_of(data)
    rng = np.random.default_rng(parts)
    part_of = {u: int(rng.integers(parts)) for u in set(data.items)}
    states = [state_of(data, [i for i, u in enumerate(data.items) if part_of[u] == k]) for k in range(parts)]
    merged = AgreementState.merge(*states)
    assert merged.to_bytes() == whole.to_bytes()
    assert AgreementState.merge(*reversed(states)).to_bytes() == whole.to_bytes()
    left = AgreementState.merge(AgreementState.merge(*states[:1]), AgreementState.merge(*states[1:]))
    assert left.to_bytes() == whole.to_bytes()
    assert agreement_metrics(merged) == agreement_metrics(whole)
    assert AgreementState.merge(whole, AgreementState.empty(5)).to_bytes() == whole.to_bytes()


def test_bytes_round_trip():
    state = state_of(synth(80, items=120, classes=7, annotators=5, audit_rate=0.3))
    again = AgreementState.from_bytes(state.to_bytes())
    assert again.to_bytes() == state.to_bytes()
    assert agreement_metrics(again) == agreement_metrics(state)
    assert agreement_metrics(AgreementState.from_bytes(AgreementState.empty(3).to_bytes())).items == 0


def test_undefined_values_are_none():
    empty = agreement_metrics(AgreementState.empty(3))
    assert (empty.items, empty.percent_agreement, empty.krippendorff_alpha, empty.fleiss_kappa) == (0, None, None, None)
    # only singly annotated items: nothing is pairable
    single = agreement_metrics(agreement_state([1, 2, 3], ["a", "b", "a"], [0, 1, 2], num_classes=3))
    assert (single.items, single.single, single.krippendorff_alpha, single.percent_agreement) == (0, 3, None, None)
    # every pairable label the same class: no expected disagreement, α and κ are 0 / 0
    one = agreement_metrics(agreement_state([1, 1, 2, 2, 3], ["a", "b", "a", "b", "a"], [2, 2, 2, 2, 0], num_classes=3))
    assert one.percent_agreement == 1.0
    assert (one.krippendorff_alpha, one.fleiss_kappa, one.pairs[0].cohen_kappa) == (None, None, None)
    assert one.per_class[0].specific_agreement is None and one.per_class[2].specific_agreement == 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"items": [1, 1], "annotators": ["a", "a"], "labels": [0, 1]}, "at most once", id="repeat"),
        pytest.param(
            {"items": [1, 1], "annotators": ["a", "b"], "labels": [0, 1], "audit": [True, True]},
            "one audit",
            id="two-audits",
        ),
        pytest.param({"items": [1, 2], "annotators": ["a", "b"], "labels": [0, 5]}, "class index", id="bad-label"),
        pytest.param({"items": [1], "annotators": ["a", "b"], "labels": [0, 1]}, "items has shape", id="lengths"),
        pytest.param({"items": [1, 2], "annotators": ["a"], "labels": [0, 1]}, "annotators has 1", id="annotators"),
    ],
)
def test_bad_input_is_refused_with_a_reason(kwargs, message):
    with pytest.raises(ValueError, match=message):
        agreement_state(num_classes=3, **kwargs)


def test_states_of_different_class_counts_do_not_merge():
    with pytest.raises(ValueError, match="classes"):
        AgreementState.merge(AgreementState.empty(3), AgreementState.empty(4))


def test_values_are_finite_fractions():
    m = agreement_metrics(state_of(synth(90, items=200, classes=4, annotators=5)))
    for value in (m.percent_agreement, m.krippendorff_alpha):
        assert value is not None and math.isfinite(value)


def test_widening_is_exact_and_lets_states_of_a_grown_class_list_merge():
    """A model's class list only grows by appending: an hour counted over 3 classes merges with
    one counted over 5, and the merge is the state of all the annotations counted over 5."""
    data = synth(95, items=200, classes=3, annotators=4, audit_rate=0.2)
    half = len(data.items) // 2
    first = {data.items[i] for i in range(half)}
    old = state_of(data, [i for i, u in enumerate(data.items) if u in first])
    new_idx = [i for i, u in enumerate(data.items) if u not in first]
    new = agreement_state([data.items[i] for i in new_idx], [data.annotators[i] for i in new_idx],
                          [data.labels[i] for i in new_idx], num_classes=5, audit=[data.audit[i] for i in new_idx])  # fmt: skip
    whole = agreement_state(data.items, data.annotators, data.labels, num_classes=5, audit=data.audit)
    assert AgreementState.merge(old.widen(5), new).to_bytes() == whole.to_bytes()
    assert old.widen(3) is old
    with pytest.raises(ValueError, match="narrow"):
        old.widen(2)
