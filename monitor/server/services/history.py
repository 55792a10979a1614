"""The metric history and what is merged from hour states on demand (confusion matrices, a
week's exact class counts and annotator agreement).

Read by the API (``GET /v1/models/{model}/metrics``, ``/confusion-matrix``), the console and the
reports; written by the evaluate and drift jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.metrics import AgreementState, ClassificationState
from monitor.server.services.evaluation import load_window
from monitor.server.services.states import SliceState
from monitor.server.store import tables as t
from monitor.wire import ModelSpec


@dataclass(frozen=True)
class MetricFilter:
    """Which rows of a model's history: one window length, and optionally a version, a cohort
    slice (``("", "")`` for whole versions), metrics and a class."""

    model: str
    window: str
    version: str | None = None
    cohort: tuple[str, str] | None = None
    metrics: tuple[str, ...] = ()
    cls: str | None = None

    def where(self, table: sa.Table) -> list[Any]:
        c = table.c
        out = [c.model == self.model, c.window == self.window]
        if self.version is not None:
            out.append(c.version == self.version)
        if self.cohort is not None:
            out += [c.cohort_key == self.cohort[0], c.cohort_value == self.cohort[1]]
        if self.metrics:
            out.append(c.metric.in_(self.metrics))
        if self.cls is not None:
            out.append(c["class"] == self.cls)
        return out


def latest_points(conn: Connection, which: MetricFilter) -> list[Any]:
    """Rows of the rolling windows ending at the current hour (what /metrics serves)."""
    ml = t.metric_latest
    order = (ml.c.version, ml.c.cohort_key, ml.c.cohort_value, ml.c.metric, ml.c["class"])
    return list(conn.execute(sa.select(ml).where(*which.where(ml)).order_by(*order)).all())


def history_points(conn: Connection, which: MetricFilter, since: datetime, until: datetime, *, offset: int, limit: int) -> list[Any]:
    """Rows of the aligned windows starting in ``[since, until)``, in a stable order, paged."""
    mp = t.metric_points
    order = (mp.c.window_start, mp.c.version, mp.c.cohort_key, mp.c.cohort_value, mp.c.metric, mp.c["class"])
    query = sa.select(mp).where(*which.where(mp), mp.c.window_start >= since, mp.c.window_start < until)
    return list(conn.execute(query.order_by(*order).offset(offset).limit(limit)).all())


@dataclass(frozen=True)
class Confusion:
    classes: tuple[str, ...]
    #: rows true class, columns predicted class
    matrix: list[list[int]]
    samples: int


def confusion_matrix(
    conn: Connection, spec: ModelSpec, start: datetime, end: datetime, *, version: str | None, cohort: tuple[str, str] | None
) -> Confusion:
    """The confusion matrix of a classification model over ``[start, end)``, merged from its
    hour states: one version (or all together), one cohort slice (or everything)."""
    slices = load_window(conn, spec.name, start, end)
    key = cohort or ("", "")
    chosen = [s for k, s in slices.items() if (version is None or k.version == version) and (k.cohort_key, k.cohort_value) == key]
    merged = SliceState.merge(*chosen) if chosen else None
    classes = tuple(spec.classes)
    if merged is None or merged.classification is None:
        return Confusion(classes, [[0] * len(classes) for _ in classes], 0)
    cm = merged.classification.widen(len(classes)).confusion_matrix()
    return Confusion(classes, cm.tolist(), int(cm.sum()))



@dataclass(frozen=True, slots=True)
class PointRow:
    """One stored metric point, without its window name and model."""

    window_start: datetime
    version: str
    cohort_key: str
    cohort_value: str
    metric: str
    cls: str
    value: float | None
    sample_count: int


def points(
    conn: Connection,
    model: str,
    window: str,
    metrics: Sequence[str],
    *,
    starts: Sequence[datetime] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    whole_only: bool = False,
) -> list[PointRow]:
    """Stored points of ``metrics`` in the aligned windows ``window`` that start at one of
    ``starts`` or in ``[since, until)``; ``whole_only``: the class-less points only."""
    mp = t.metric_points.c
    where = [mp.model == model, mp.window == window, mp.metric.in_(list(metrics))]
    if starts is not None:
        where.append(mp.window_start.in_(list(starts)))
    if since is not None:
        where.append(mp.window_start >= since)
    if until is not None:
        where.append(mp.window_start < until)
    if whole_only:
        where.append(mp["class"] == "")
    query = sa.select(mp.window_start, mp.version, mp.cohort_key, mp.cohort_value, mp.metric, mp["class"], mp.value, mp.sample_count)
    return [PointRow(*r) for r in conn.execute(query.where(*where))]


def windows_with(conn: Connection, model: str, metric: str, since: datetime, until: datetime) -> list[str]:
    """The window lengths that have points of ``metric`` starting in ``[since, until)``."""
    mp = t.metric_points.c
    query = sa.select(mp.window).where(mp.model == model, mp.metric == metric, mp.window_start >= since, mp.window_start < until)
    return list(conn.execute(query.distinct()).scalars())


@dataclass(frozen=True)
class WholeModel:
    """A classification model's exact counts over a span, every version together, over its
    current classes: labelled predictions, and its annotations (None without any)."""

    classification: ClassificationState
    agreement: AgreementState | None


def whole_model(conn: Connection, spec: ModelSpec, start: datetime, end: datetime) -> WholeModel:
    """The :class:`WholeModel` of ``[start, end)``, merged from the hour states."""
    whole = [s for k, s in load_window(conn, spec.name, start, end).items() if not k.cohort_key]
    merged = SliceState.merge(*whole) if whole else None
    n = len(spec.classes)
    classification = None if merged is None else merged.classification
    agreement = None if merged is None else merged.agreement
    return WholeModel(
        ClassificationState.empty(n) if classification is None else classification.widen(n),
        None if agreement is None else agreement.widen(n),
    )


def whole_classification(conn: Connection, spec: ModelSpec, start: datetime, end: datetime) -> ClassificationState:
    """The classification state of every version together over ``[start, end)``, widened to the
    model's current classes (empty when nothing is labelled)."""
    return whole_model(conn, spec, start, end).classification
