"""What the console's model pages read: metric history, merged window states, drift references,
the predictions behind a confusion cell, stored reports.

Functions over the caller's connection; none commits. The metric rows are those the evaluate
and drift jobs store (``metric_points``: aligned windows; ``metric_latest``: the rolling window
ending at the current hour); the console groups them into charts and tables.

Cohort filters are strings, as in the query API: ``None`` every slice, ``""`` whole versions,
``"camera:cam-3"`` one slice, ``"camera:*"`` every value of a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from monitor.metrics import (
    CalibrationMetrics,
    CalibrationState,
    ClassificationMetrics,
    ClassificationState,
    calibration_metrics,
    classification_metrics,
)
from monitor.server.services.models import VersionInfo, model_info, model_names
from monitor.server.services.reports import StoredReport, list_reports, report_html
from monitor.server.services.states import merge_calibration, merge_classification
from monitor.server.store import tables as t
from monitor.server.store.reads import fetch_binary
from monitor.wire import ModelSpec

#: Prediction rows a confusion cell lists at most (newest first).
CELL_LIMIT = 200


@dataclass(frozen=True, slots=True)
class ModelView:
    """A registered model as its pages need it."""

    spec: ModelSpec
    created_at: datetime
    versions: tuple[VersionInfo, ...]
    #: cohort slices with evaluated metrics, e.g. ("camera", "cam-3"), sorted
    cohorts: tuple[tuple[str, str], ...]
    predictions: int
    labelled: int


@dataclass(frozen=True, slots=True)
class MetricRow:
    """One stored metric value of one window and slice; ``n`` is the samples it stands on."""

    window_start: datetime
    window_end: datetime
    version: str
    cohort_key: str
    cohort_value: str
    metric: str
    cls: str
    value: float | None
    n: int

    @property
    def cohort(self) -> str:
        return f"{self.cohort_key}:{self.cohort_value}" if self.cohort_key else ""


@dataclass(frozen=True, slots=True)
class DriftReference:
    """The data a version's drift detector compares each window against."""

    version: str
    detector: str
    feature: str
    n_reference: int
    reference_start: datetime
    reference_end: datetime
    fitted_at: datetime
    #: how the reference was chosen: ``first`` (first predictions of the version) or ``range``
    kind: str
    source_version: str | None


@dataclass(frozen=True, slots=True)
class CellPrediction:
    """A labelled prediction of a confusion cell."""

    prediction_id: str
    ts: datetime
    version: str
    cohort: dict[str, Any]
    confidence: float | None
    latency_ms: float | None
    labelled_at: datetime


def all_models(conn: Connection) -> list[str]:
    return model_names(conn)


def model_view(conn: Connection, model: str) -> ModelView | None:
    """The model, its versions and the cohort slices it has metrics for; None when unknown."""
    info = model_info(conn, model)
    if info is None:
        return None
    ml = t.metric_latest.c
    cohorts = conn.execute(
        sa.select(ml.cohort_key, ml.cohort_value)
        .where(ml.model == model, ml.cohort_key != "")
        .distinct()
        .order_by(ml.cohort_key, ml.cohort_value)
    ).all()
    return ModelView(
        spec=info.spec, created_at=info.created_at, versions=info.versions,
        cohorts=tuple((k, v) for k, v in cohorts), predictions=info.predictions, labelled=info.labelled,
    )  # fmt: skip


def _slice_filter(columns: Any, cohort: str | None) -> list[Any]:
    if cohort is None:
        return []
    if cohort == "":
        return [columns.cohort_key == "", columns.cohort_value == ""]
    key, _, value = cohort.partition(":")
    if value == "*":
        return [columns.cohort_key == key]
    return [columns.cohort_key == key, columns.cohort_value == value]


def metric_rows(
    conn: Connection,
    model: str,
    *,
    window: str,
    metrics: Sequence[str],
    since: datetime,
    until: datetime,
    version: str | None = None,
    cohort: str | None = "",
    classes: Sequence[str] | None = None,
) -> list[MetricRow]:
    """Stored values of ``metrics`` for the aligned ``window``s starting in ``[since, until)``,
    oldest first."""
    mp = t.metric_points.c
    where = [mp.model == model, mp.window == window, mp.window_start >= since, mp.window_start < until, mp.metric.in_(list(metrics))]
    where += _slice_filter(mp, cohort)
    if version is not None:
        where.append(mp.version == version)
    if classes is not None:
        where.append(mp["class"].in_(list(classes)))
    query = sa.select(
        mp.window_start, mp.window_end, mp.version, mp.cohort_key, mp.cohort_value, mp.metric, mp["class"], mp.value,
        mp.sample_count,
    ).where(*where)  # fmt: skip
    rows = [MetricRow(*r) for r in conn.execute(query).all()]  # fetchall: a row at a time costs twice as much
    rows.sort(key=lambda r: (r.window_start, r.version, r.cohort_key, r.cohort_value, r.metric, r.cls))
    return rows


def latest_rows(
    conn: Connection,
    models: Sequence[str],
    *,
    metrics: Sequence[str],
    windows: Sequence[str] | None = None,
    cohort: str | None = "",
    version: str | None = None,
) -> dict[str, list[MetricRow]]:
    """The rolling windows ending at the current hour (what /metrics serves), per model."""
    if not models:
        return {}
    ml = t.metric_latest.c
    where = [ml.model.in_(list(models)), ml.metric.in_(list(metrics)), *_slice_filter(ml, cohort)]
    if windows is not None:
        where.append(ml.window.in_(list(windows)))
    if version is not None:
        where.append(ml.version == version)
    query = sa.select(
        ml.model, ml.window, ml.window_start, ml.window_end, ml.version, ml.cohort_key, ml.cohort_value, ml.metric,
        ml["class"], ml.value, ml.sample_count,
    ).where(*where)  # fmt: skip
    out: dict[str, list[MetricRow]] = {m: [] for m in models}
    for r in conn.execute(query):
        out[r.model].append(MetricRow(r.window_start, r.window_end, r.version, r.cohort_key, r.cohort_value,
                                      f"{r.metric}@{r.window}", r._mapping["class"], r.value, r.sample_count))  # fmt: skip
    return out


def newest_window(conn: Connection, model: str, *, window: str, metric: str, since: datetime, until: datetime) -> datetime | None:
    """The start of the newest aligned window in ``[since, until)`` with a value of ``metric``."""
    mp = t.metric_points.c
    # newest first with a limit, not max(): the index is walked backwards and stops at the first
    # match instead of reading every row of the range
    return conn.execute(  # type: ignore[no-any-return]
        sa.select(mp.window_start)
        .where(mp.model == model, mp.window == window, mp.window_start >= since, mp.window_start < until, mp.metric == metric)
        .order_by(mp.window_start.desc())
        .limit(1)
    ).scalar()


def window_starts(conn: Connection, model: str, *, window: str, metric: str, since: datetime, until: datetime) -> list[datetime]:
    """Starts of the aligned windows in ``[since, until)`` that have a value of ``metric``, newest first."""
    mp = t.metric_points.c
    query = (
        sa.select(mp.window_start)
        .where(mp.model == model, mp.window == window, mp.window_start >= since, mp.window_start < until, mp.metric == metric,
               mp.cohort_key == "", mp["class"] == "")
        .distinct()
    )
    return sorted(conn.execute(query).scalars(), reverse=True)


def merged_states(
    conn: Connection,
    model: str,
    *,
    kind: str,
    n_classes: int,
    start: datetime,
    end: datetime,
    version: str | None,
    cohort: str,
    by_version: bool = False,
) -> dict[str, Any]:
    """The ``kind`` state (``classification`` or ``calibration``) of ``[start, end)``: the exact
    merge of the stored hour states of one slice (``""``: whole versions), of one version or of
    every version; per version with ``by_version`` (keyed by version, else by ``""``). Slices
    without such a state (nothing labelled) are absent."""
    es = t.eval_states.c
    column = {"classification": es.classification, "calibration": es.calibration}[kind]
    where = [es.model == model, es.hour_start >= start, es.hour_start < end, column.is_not(None)]
    where += _slice_filter(es, cohort)
    if version is not None:
        where.append(es.version == version)
    groups: dict[str, list[Any]] = {}
    for r in fetch_binary(conn, sa.select(es.version, column.label("state")).where(*where)):
        decoded = (ClassificationState if kind == "classification" else CalibrationState).from_bytes(bytes(r.state))
        groups.setdefault(r.version if by_version else "", []).append(decoded)
    return {key: _merge(kind, states, n_classes) for key, states in sorted(groups.items())}


def window_classification(
    conn: Connection, model: str, *, n_classes: int, start: datetime, end: datetime, version: str | None, cohort: str
) -> ClassificationMetrics | None:
    """Accuracy, per-class precision / recall / F1 and the confusion matrix of ``[start, end)``
    (see :func:`merged_states`); None without labelled predictions."""
    state = merged_states(conn, model, kind="classification", n_classes=n_classes, start=start, end=end, version=version,
                          cohort=cohort).get("")  # fmt: skip
    return None if state is None else classification_metrics(state)


def window_calibration(
    conn: Connection, model: str, *, n_classes: int, start: datetime, end: datetime, version: str | None, cohort: str
) -> dict[str, CalibrationMetrics]:
    """ECE, MCE, Brier and the reliability bins of ``[start, end)`` per version."""
    states = merged_states(conn, model, kind="calibration", n_classes=n_classes, start=start, end=end, version=version,
                           cohort=cohort, by_version=True)  # fmt: skip
    return {version: calibration_metrics(state) for version, state in states.items()}


def _merge(kind: str, states: list[Any], n_classes: int) -> Any:
    if kind == "classification":
        return merge_classification(states, n_classes)
    return merge_calibration(states)


def drift_references(conn: Connection, model: str) -> list[DriftReference]:
    """The fitted references of every version, with how each was chosen."""
    r, s = t.drift_references.c, t.drift_reference_specs.c
    specs = {
        row.version: (row.kind, row.source_version)
        for row in conn.execute(sa.select(s.version, s.kind, s.source_version).where(s.model == model))
    }
    rows = conn.execute(
        sa.select(r.version, r.detector, r.feature, r.n_reference, r.reference_start, r.reference_end, r.fitted_at)
        .where(r.model == model)
        .order_by(r.version, r.detector, r.feature)
    ).all()
    out = []
    for row in rows:
        kind, source = specs.get(row.version) or specs.get("") or ("first", None)
        out.append(DriftReference(row.version, row.detector, row.feature, row.n_reference, row.reference_start,
                                  row.reference_end, row.fitted_at, kind, source))  # fmt: skip
    return out


def cell_predictions(
    conn: Connection,
    model: str,
    *,
    start: datetime,
    end: datetime,
    true_class: int,
    predicted_class: int,
    version: str | None,
    cohort: str,
    limit: int = CELL_LIMIT,
) -> list[CellPrediction]:
    """The labelled predictions in ``[start, end)`` whose label is ``true_class`` and whose
    prediction is ``predicted_class`` (class indices), newest first."""
    p, g = t.predictions.c, t.ground_truth.c
    # the labels' own time range too: it prunes their partitions and bounds their index scan
    # (the planner does not carry the range across the join)
    where = [
        p.model == model, p.ts >= start, p.ts < end, p.predicted_class == predicted_class, p.status == 0,
        g.model == model, g.prediction_ts >= start, g.prediction_ts < end, g.label == true_class,
    ]  # fmt: skip
    if version is not None:
        where.append(p.model_version == version)
    if cohort:
        key, _, value = cohort.partition(":")
        where.append(p.cohort[key].as_string() == value)
    query = (
        sa.select(p.prediction_id, p.ts, p.model_version, p.cohort, p.confidence, p.latency_ms, g.labelled_at)
        .join_from(t.predictions, t.ground_truth,
                   sa.and_(g.model == p.model, g.prediction_ts == p.ts, g.prediction_id == p.prediction_id))
        .where(*where)
        .order_by(p.ts.desc(), p.prediction_id)
        .limit(limit)
    )
    return [CellPrediction(r.prediction_id, r.ts, r.model_version, dict(r.cohort or {}), r.confidence, r.latency_ms,
                           r.labelled_at) for r in conn.execute(query)]  # fmt: skip


def reports_of(conn: Connection, model: str) -> list[StoredReport]:
    """The stored weekly reports of ``model``, newest first."""
    return list_reports(conn, model)


def report_of(conn: Connection, model: str, report_id: str) -> bytes | None:
    return report_html(conn, model, report_id)


def aligned(moment: datetime, seconds: int) -> datetime:
    """The start of the aligned window of ``seconds`` holding ``moment`` (1h on the hour, 1d at
    00:00 UTC, 7d on Mondays): the windows the evaluate job stores."""
    from monitor.server.services.windows import aligned_start, hour_floor

    return aligned_start(hour_floor(moment), seconds)
