"""Label quality from annotator agreement, from a mergeable count state.

The input is *reliability data* in long form: one row per annotation (item, annotator, class
label, whether it is an audit). Every item is a labelled prediction; an annotator labels an item
at most once. Annotations flagged ``audit`` are the reference of their item (at most one per
item): they score the other annotators' accuracy and take no part in agreement.

Definitions, all nominal, follow the references the tests use as oracles:

* **Krippendorff's α** (the ``krippendorff`` package, ``level_of_measurement="nominal"``): items
  with fewer than two annotations are unpairable and ignored; an item with ``m`` annotations adds
  ``n_uc · (n_uk − δ_ck) / (m − 1)`` to the coincidence ``o_ck``. With ``n_c`` the pairable
  values of class ``c`` and ``n = Σ n_c``: ``α = 1 − (n − 1)(n − Σ_c o_cc) / (n² − Σ_c n_c²)``.
* **Percent agreement**: the observed agreement of α, ``Σ_c o_cc / n``: the share of agreeing
  ordered pairs within items, each item weighted by its annotations. With two annotations per
  item it is the share of items on which they agree; with ``m`` per item, Fleiss' ``P̄``.
* **Fleiss' κ** (statsmodels ``fleiss_kappa(method="fleiss")``) over the pairable items. Like
  statsmodels, it needs the same number of annotations on every item: ``None`` when the
  pairable items have different numbers (α is the measure for that case).
* **Cohen's κ** per pair of annotators (scikit-learn ``cohen_kappa_score``) over the items both
  labelled.
* **Accuracy** of an annotator on the items with an audit (scikit-learn ``accuracy_score``).
* **Specific agreement** of class ``c``: ``o_cc / n_c``, the share of class-``c`` labels whose
  partners in the item said ``c`` too; the most disputed classes have the lowest.

Every value is ``None`` where it is undefined (no pairable items; a single class; 0 / 0), never 0.

The state of a window counts each item once, with all of its annotations: items are predictions
of the window's hours, so the states of disjoint hours merge exactly into the state of their
union (integer counts, summed). A late annotation changes its item's contribution (its
``m``): the state of the item's hour is computed again, never incremented.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._codec import pack, readonly, unpack
from ._scan import check_labels

_KIND: Final = "agreement"
_I64 = np.int64


@dataclass(frozen=True, eq=False, slots=True)
class AgreementState:
    """Mergeable counts of the annotations of one window's items.

    Attributes
    ----------
    num_classes
        Number of classes ``C``.
    annotators
        Annotator names, sorted; the index arrays below refer to this tuple.
    group_size, group_class, group_values, group_same
        Sparse by (annotations per item ``m`` ≥ 2, class ``c``), sorted: the class-``c`` labels on
        items with ``m`` (non-audit) annotations, and ``Σ n_uc (n_uc − 1)`` over those items.
    disputed
        Pairable items whose annotations are not all the same class.
    disputed_class, disputed_count
        Sparse, sorted: how many disputed items had a label of each class.
    single
        Items with exactly one (non-audit) annotation: labelled, but not pairable.
    pair_a, pair_b, pair_label_a, pair_label_b, pair_count
        Sparse, sorted: for annotators ``a < b`` who both labelled an item, how many items they
        labelled (label of ``a``, label of ``b``): Cohen's confusion matrix of each pair.
    annotated, audited, audit_correct
        Per annotator: non-audit annotations; those on items with an audit; those that equal it.
    """

    num_classes: int
    annotators: tuple[str, ...]
    group_size: NDArray[np.int64]
    group_class: NDArray[np.int64]
    group_values: NDArray[np.int64]
    group_same: NDArray[np.int64]
    disputed: int
    disputed_class: NDArray[np.int64]
    disputed_count: NDArray[np.int64]
    single: int
    pair_a: NDArray[np.int64]
    pair_b: NDArray[np.int64]
    pair_label_a: NDArray[np.int64]
    pair_label_b: NDArray[np.int64]
    pair_count: NDArray[np.int64]
    annotated: NDArray[np.int64]
    audited: NDArray[np.int64]
    audit_correct: NDArray[np.int64]

    @property
    def items(self) -> int:
        """Pairable items: those with two or more (non-audit) annotations."""
        return sum(int(v) // int(m) for m, v in _per_size(self.group_size, self.group_values).items())

    @classmethod
    def empty(cls, num_classes: int) -> AgreementState:
        """The state of a window without annotations (the identity of :meth:`merge`)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        return cls(num_classes=num_classes, annotators=(), disputed=0, single=0, **{name: _zeros() for name in _ARRAYS})

    @classmethod
    def merge(cls, *states: AgreementState) -> AgreementState:
        """The state of the union of windows whose items are disjoint (exact, associative,
        commutative). An item's annotations must all be in one of the states."""
        if not states:
            raise ValueError("merge needs at least one state")
        c = states[0].num_classes
        if any(s.num_classes != c for s in states):
            raise ValueError(f"cannot merge states of {sorted({s.num_classes for s in states})} classes")
        names = tuple(sorted(set().union(*(s.annotators for s in states))))
        index = {name: i for i, name in enumerate(names)}
        maps = [np.array([index[a] for a in s.annotators], dtype=_I64) for s in states]
        groups = _sum_rows(
            [np.stack([s.group_size, s.group_class]) for s in states],
            [np.stack([s.group_values, s.group_same]) for s in states],
            (2, 2),
        )
        disputed = _sum_rows(
            [s.disputed_class[None, :] for s in states], [s.disputed_count[None, :] for s in states], (1, 1)
        )
        pairs = _sum_rows(
            [
                _pair_rows(m[s.pair_a], m[s.pair_b], s.pair_label_a, s.pair_label_b)
                for s, m in zip(states, maps, strict=True)
            ],
            [s.pair_count[None, :] for s in states],
        )
        per_annotator = np.zeros((3, len(names)), dtype=_I64)
        for s, m in zip(states, maps, strict=True):
            for row, counts in enumerate((s.annotated, s.audited, s.audit_correct)):
                np.add.at(per_annotator[row], m, counts)
        return _make(
            c,
            names,
            groups,
            sum(s.disputed for s in states),
            disputed,
            sum(s.single for s in states),
            pairs,
            per_annotator,
        )

    def widen(self, num_classes: int) -> AgreementState:
        """The same counts over a class list that grew by appending classes: labels are class
        indices, which appending keeps, so widening is exact and states from before and after a
        model gained classes merge."""
        if num_classes < self.num_classes:
            raise ValueError(f"cannot narrow a state of {self.num_classes} classes to {num_classes}")
        if num_classes == self.num_classes:
            return self
        return replace(self, num_classes=num_classes)

    def to_bytes(self) -> bytes:
        """Compact, versioned bytes (see :mod:`monitor.metrics._codec`); no pickle."""
        arrays = {name: getattr(self, name) for name in _ARRAYS}
        meta = {"num_classes": self.num_classes, "annotators": list(self.annotators),
                "disputed": self.disputed, "single": self.single}  # fmt: skip
        return pack(_KIND, meta, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> AgreementState:
        """Read a state written by :meth:`to_bytes`."""
        meta, arrays = unpack(data, _KIND, required=_ARRAYS)
        names = meta.get("annotators")
        if not isinstance(names, list) or not all(isinstance(a, str) for a in names):
            raise ValueError("agreement state has no annotator list")
        return cls(
            num_classes=int(meta["num_classes"]),
            annotators=tuple(names),
            disputed=int(meta["disputed"]),
            single=int(meta["single"]),
            **{name: arrays[name] for name in _ARRAYS},
        )


_ARRAYS: Final = (
    "group_size", "group_class", "group_values", "group_same", "disputed_class", "disputed_count",
    "pair_a", "pair_b", "pair_label_a", "pair_label_b", "pair_count", "annotated", "audited", "audit_correct",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ClassAgreement:
    """One class: its pairable labels, their specific agreement, the disputed items it is in."""

    values: int
    specific_agreement: float | None
    disputed: int


@dataclass(frozen=True, slots=True)
class PairAgreement:
    """Two annotators over the items they both labelled."""

    annotator_a: str
    annotator_b: str
    items: int
    percent_agreement: float | None
    cohen_kappa: float | None


@dataclass(frozen=True, slots=True)
class AnnotatorAgreement:
    """One annotator: how often their labels agree with the others', and with the audits."""

    annotator: str
    annotations: int
    #: share of this annotator's pairs (with each other annotator of an item) that agree
    agreement: float | None
    audited: int
    accuracy: float | None


@dataclass(frozen=True, slots=True)
class AgreementMetrics:
    """Everything :func:`agreement_metrics` derives from a state."""

    #: items with two or more annotations, and with one
    items: int
    single: int
    #: annotations on the pairable items (Krippendorff's ``n``)
    annotations: int
    percent_agreement: float | None
    krippendorff_alpha: float | None
    fleiss_kappa: float | None
    #: pairable items whose annotators did not all agree
    disputed: int
    per_class: tuple[ClassAgreement, ...]
    pairs: tuple[PairAgreement, ...]
    annotators: tuple[AnnotatorAgreement, ...]


def agreement_state(
    items: ArrayLike,
    annotators: Sequence[str] | ArrayLike,
    labels: ArrayLike,
    *,
    num_classes: int,
    audit: ArrayLike | None = None,
) -> AgreementState:
    """Count a window's annotations.

    Parameters
    ----------
    items
        The item (prediction) of each annotation: any hashable ids, shape ``(N,)``.
    annotators
        Who made each annotation (names; other values are turned into text).
    labels
        The class index of each annotation.
    num_classes
        Number of classes.
    audit
        Whether each annotation is its item's reference (at most one per item). Default: none.
    """
    y = check_labels(labels, None, num_classes)
    n = y.size
    item_ids = np.asarray(items)
    if item_ids.shape != (n,):
        raise ValueError(f"items has shape {item_ids.shape}; expected ({n},), one per label")
    names_in = [str(a) for a in np.asarray(annotators, dtype=object).reshape(-1).tolist()]
    if len(names_in) != n:
        raise ValueError(f"annotators has {len(names_in)} values; expected {n}, one per label")
    is_audit = np.zeros(n, dtype=bool) if audit is None else np.asarray(audit, dtype=bool)
    if is_audit.shape != (n,):
        raise ValueError(f"audit has shape {is_audit.shape}; expected ({n},)")
    if n == 0:
        return AgreementState.empty(num_classes)
    _, item = np.unique(item_ids, return_inverse=True)
    item = item.astype(_I64).reshape(-1)
    name_list, who = np.unique(np.array(names_in, dtype=object).astype(str), return_inverse=True)
    who = who.astype(_I64).reshape(-1)
    names = tuple(str(a) for a in name_list.tolist())
    n_items = int(item.max()) + 1
    if np.unique(item * len(names) + who).size != n:
        raise ValueError("an annotator labels an item at most once: (item, annotator) repeats")
    if np.bincount(item[is_audit], minlength=n_items).max(initial=0) > 1:
        raise ValueError("an item has at most one audit annotation (its reference)")

    peer = ~is_audit
    p_item, p_who, p_label = item[peer], who[peer], y[peer]
    m = np.bincount(p_item, minlength=n_items)
    # per (item, class): how many annotators chose the class
    keys, per = np.unique(p_item * num_classes + p_label, return_counts=True)
    k_item, k_class = np.divmod(keys, num_classes)
    k_m = m[k_item]
    pairable = k_m >= 2
    distinct = np.bincount(k_item, minlength=n_items)
    disputed_item = (m >= 2) & (distinct >= 2)
    groups = _sum_rows([np.stack([k_m[pairable], k_class[pairable]])],
                       [np.stack([per[pairable], per[pairable] * (per[pairable] - 1)])], (2, 2))  # fmt: skip
    in_dispute = disputed_item[k_item]
    disputed_cls, disputed_n = np.unique(k_class[in_dispute], return_counts=True)

    pairs = _pairs(p_item, p_who, p_label)
    annotated = np.bincount(p_who, minlength=len(names)).astype(_I64)
    reference = np.full(n_items, -1, dtype=_I64)
    reference[item[is_audit]] = y[is_audit]
    ref = reference[p_item]
    checked = ref >= 0
    audited = np.bincount(p_who[checked], minlength=len(names)).astype(_I64)
    correct = np.bincount(p_who[checked & (ref == p_label)], minlength=len(names)).astype(_I64)
    return _make(
        num_classes, names, groups, int(disputed_item.sum()),
        (disputed_cls[None, :].astype(_I64), disputed_n[None, :].astype(_I64)), int((m == 1).sum()),
        pairs, np.stack([annotated, audited, correct]),
    )  # fmt: skip


def agreement_metrics(state: AgreementState) -> AgreementMetrics:
    """Agreement, α, Fleiss' and Cohen's κ, per-class, per-pair and per-annotator figures."""
    c = state.num_classes
    by_size = _group_by_size(state)
    values = np.zeros(c, dtype=_I64)
    np.add.at(values, state.group_class, state.group_values)
    n = int(values.sum())
    # o_cc, exactly: Σ over item sizes m of Σ n_uc (n_uc − 1) / (m − 1)
    diagonal = [Fraction(0)] * c
    for size, (cls, _, same) in by_size.items():
        for k, s in zip(cls.tolist(), same.tolist(), strict=True):
            diagonal[k] += Fraction(s, size - 1)
    agreeing = sum(diagonal, Fraction(0))
    squares = int(np.dot(values.astype(object), values.astype(object))) if n else 0
    alpha = None
    if n and n * n != squares:
        alpha = float(1 - (n - 1) * (n - agreeing) / (n * n - squares))
    disputed = np.zeros(c, dtype=_I64)
    disputed[state.disputed_class] = state.disputed_count
    per_class = tuple(
        ClassAgreement(int(v), float(diagonal[k] / v) if v else None, int(d))
        for k, (v, d) in enumerate(zip(values.tolist(), disputed.tolist(), strict=True))
    )
    pairs, annotators = _pair_metrics(state)
    return AgreementMetrics(
        items=state.items,
        single=state.single,
        annotations=n,
        percent_agreement=float(agreeing / n) if n else None,
        krippendorff_alpha=alpha,
        fleiss_kappa=_fleiss(by_size),
        disputed=state.disputed,
        per_class=per_class,
        pairs=pairs,
        annotators=annotators,
    )


def _fleiss(by_size: dict[int, tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]]) -> float | None:
    """Fleiss' κ when every pairable item has the same number ``m`` of annotations."""
    if len(by_size) != 1:
        return None
    ((m, (_, values, same)),) = by_size.items()
    total = int(values.sum())  # N · m
    items = total // m
    p_mean = Fraction(int(same.sum()), items * m * (m - 1))
    p_exp = Fraction(sum(v * v for v in values.tolist()), total * total)
    if p_exp == 1:
        return None
    return float((p_mean - p_exp) / (1 - p_exp))


def _pair_metrics(state: AgreementState) -> tuple[tuple[PairAgreement, ...], tuple[AnnotatorAgreement, ...]]:
    names = state.annotators
    a, b, la, lb, count = state.pair_a, state.pair_b, state.pair_label_a, state.pair_label_b, state.pair_count
    pairs: list[PairAgreement] = []
    pair_items = np.zeros(len(names), dtype=_I64)
    pair_agree = np.zeros(len(names), dtype=_I64)
    if count.size:
        same = np.where(la == lb, count, 0)
        np.add.at(pair_items, a, count)
        np.add.at(pair_items, b, count)
        np.add.at(pair_agree, a, same)
        np.add.at(pair_agree, b, same)
        starts = np.flatnonzero(np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])])
        for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), count.size], strict=True):
            n = int(count[lo:hi].sum())
            agree = int(same[lo:hi].sum())
            pairs.append(PairAgreement(names[int(a[lo])], names[int(b[lo])], n, agree / n,
                                       _cohen(la[lo:hi], lb[lo:hi], count[lo:hi], n, agree)))  # fmt: skip
    annotators = tuple(
        AnnotatorAgreement(
            name, int(state.annotated[i]), int(pair_agree[i]) / int(pair_items[i]) if pair_items[i] else None,
            int(state.audited[i]), int(state.audit_correct[i]) / int(state.audited[i]) if state.audited[i] else None,
        )
        for i, name in enumerate(names)
        if state.annotated[i]  # an auditor who labelled nothing else is not a peer
    )  # fmt: skip
    return tuple(pairs), annotators


def _cohen(la: NDArray[np.int64], lb: NDArray[np.int64], count: NDArray[np.int64], n: int, agree: int) -> float | None:
    """``1 − (n − agree)·n / (n² − Σ_c rows_c · cols_c)`` (scikit-learn's form), exactly."""
    rows: dict[int, int] = {}
    cols: dict[int, int] = {}
    for x, y, k in zip(la.tolist(), lb.tolist(), count.tolist(), strict=True):
        rows[x] = rows.get(x, 0) + k
        cols[y] = cols.get(y, 0) + k
    chance = sum(v * cols.get(k, 0) for k, v in rows.items())
    if n * n == chance:  # both annotators used one and the same class: undefined
        return None
    return float(1 - Fraction((n - agree) * n, n * n - chance))


def _pairs(
    item: NDArray[np.int64], who: NDArray[np.int64], label: NDArray[np.int64]
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Cohen's cells: every pair of annotators ``a < b`` of an item, with their labels, summed:
    keys (4 × n: a, b, label of a, label of b) and counts (1 × n)."""
    order = np.lexsort((who, item))
    item, who, label = item[order], who[order], label[order]
    rows: list[NDArray[np.int64]] = []
    for k in range(1, int(np.bincount(item).max(initial=0)) if item.size else 0):
        i = np.flatnonzero(item[:-k] == item[k:])  # sorted by annotator within the item: who[i] < who[i+k]
        if i.size:
            rows.append(_pair_rows(who[i], who[i + k], label[i], label[i + k]))
    return _sum_rows(rows, [np.ones((1, r.shape[1]), dtype=_I64) for r in rows])


def _pair_rows(
    a: NDArray[np.int64], b: NDArray[np.int64], la: NDArray[np.int64], lb: NDArray[np.int64]
) -> NDArray[np.int64]:
    return np.stack([a, b, la, lb]).astype(_I64)


def _sum_rows(
    keys: list[NDArray[np.int64]], values: list[NDArray[np.int64]], shape: tuple[int, int] = (4, 1)
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Columns of ``keys`` (k × n) made unique and sorted, with their ``values`` (v × n) summed;
    ``shape`` is (k, v), for when there are no columns at all."""
    if not keys:
        return np.zeros((shape[0], 0), dtype=_I64), np.zeros((shape[1], 0), dtype=_I64)
    k = np.concatenate(keys, axis=1).astype(_I64)
    v = np.concatenate(values, axis=1).astype(_I64)
    if k.shape[1] == 0:
        return k, v
    unique, inverse = np.unique(k, axis=1, return_inverse=True)
    summed = np.zeros((v.shape[0], unique.shape[1]), dtype=_I64)
    for row in range(v.shape[0]):
        np.add.at(summed[row], inverse.reshape(-1), v[row])
    return unique, summed


def _per_size(sizes: NDArray[np.int64], counts: NDArray[np.int64]) -> dict[int, int]:
    out: dict[int, int] = {}
    for m, v in zip(sizes.tolist(), counts.tolist(), strict=True):
        out[m] = out.get(m, 0) + v
    return out


def _group_by_size(state: AgreementState) -> dict[int, tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]]:
    """Item size ``m`` -> (classes, their labels, their same-class pair counts)."""
    out = {}
    for m in np.unique(state.group_size).tolist():
        at = state.group_size == m
        out[int(m)] = (state.group_class[at], state.group_values[at], state.group_same[at])
    return out


def _zeros() -> NDArray[np.int64]:
    return readonly(np.zeros(0, dtype=_I64))


def _ro(array: Any) -> NDArray[np.int64]:
    return readonly(np.ascontiguousarray(array, dtype=_I64))


Rows = tuple[NDArray[np.int64], NDArray[np.int64]]


def _make(
    num_classes: int,
    names: tuple[str, ...],
    groups: Rows,
    disputed: int,
    disputed_rows: Rows,
    single: int,
    pairs: Rows,
    per_annotator: NDArray[np.int64],
) -> AgreementState:
    """A state from :func:`_sum_rows` outputs: groups (m, class; values, same), disputed (class;
    count), pairs (a, b, label a, label b; count) and per annotator (annotated, audited, correct)."""
    (size, cls), (values, same) = groups
    return AgreementState(
        num_classes=num_classes, annotators=names,
        group_size=_ro(size), group_class=_ro(cls), group_values=_ro(values), group_same=_ro(same),
        disputed=disputed, disputed_class=_ro(disputed_rows[0][0]), disputed_count=_ro(disputed_rows[1][0]),
        single=single,
        pair_a=_ro(pairs[0][0]), pair_b=_ro(pairs[0][1]), pair_label_a=_ro(pairs[0][2]), pair_label_b=_ro(pairs[0][3]),
        pair_count=_ro(pairs[1][0]),
        annotated=_ro(per_annotator[0]), audited=_ro(per_annotator[1]), audit_correct=_ro(per_annotator[2]),
    )  # fmt: skip
