"""Prometheus collectors that read stored results: a scrape never computes a metric.

:class:`StoredMetricsCollector` turns the rows of ``metric_latest`` (written by the evaluate and drift
jobs), the per-version counters and ``job_runs`` into metric families named by :mod:`.names`. Because
every value comes from the database, any API process (or replica) answers a scrape with the same
numbers, and a restart loses none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from monitor.server.exporters.names import METRIC
from monitor.server.store import tables as t
from monitor.server.store.tables import CELL_SEPARATOR


@dataclass(frozen=True)
class Export:
    """How a stored metric (``metric_latest.metric``) becomes a Prometheus series."""

    name: str
    #: Constant labels, e.g. {"iou": "0.50"}.
    labels: tuple[tuple[str, str], ...] = ()
    #: The label the stored ``class`` column goes into ("" when the metric has no class), or two
    #: labels for a class column holding two values split at the first ``separator``.
    class_label: str | tuple[str, str] = ""
    separator: str = ""
    #: Multiply the stored value (milliseconds to seconds).
    scale: float = 1.0


#: Separates detector and feature in the ``class`` column of drift rows
#: (``monitor.server.jobs.drift_features.FEATURE_SEPARATOR``).
DRIFT_SEPARATOR = ":"
_DRIFT = ("detector", "feature")


_Q = "quantile"
#: Stored metric name -> exported series. Stored metrics missing here are kept for the API only.
EXPORTS: dict[str, Export] = {
    "accuracy": Export("cvmon_accuracy_ratio"),
    "top5_accuracy": Export("cvmon_top5_accuracy_ratio"),
    "precision": Export("cvmon_precision_ratio", class_label="class"),
    "recall": Export("cvmon_recall_ratio", class_label="class"),
    "f1": Export("cvmon_f1_ratio", class_label="class"),
    "map": Export("cvmon_map_ratio", (("iou", "0.50:0.95"),)),
    "map50": Export("cvmon_map_ratio", (("iou", "0.50"),)),
    "map75": Export("cvmon_map_ratio", (("iou", "0.75"),)),
    "ap": Export("cvmon_ap_ratio", (("iou", "0.50:0.95"),), class_label="class"),
    "ap50": Export("cvmon_ap_ratio", (("iou", "0.50"),), class_label="class"),
    "ece": Export("cvmon_ece_ratio"),
    "reliability_accuracy": Export("cvmon_reliability_accuracy_ratio", class_label="bin"),
    "reliability_confidence": Export("cvmon_reliability_confidence_ratio", class_label="bin"),
    "labelled": Export("cvmon_labelled_predictions"),
    "label_coverage": Export("cvmon_label_coverage_ratio"),
    "label_latency_p50": Export("cvmon_label_latency_seconds", ((_Q, "0.5"),)),
    "label_latency_p95": Export("cvmon_label_latency_seconds", ((_Q, "0.95"),)),
    "latency_p50": Export("cvmon_inference_latency_seconds", ((_Q, "0.5"),), scale=1e-3),
    "latency_p95": Export("cvmon_inference_latency_seconds", ((_Q, "0.95"),), scale=1e-3),
    "latency_p99": Export("cvmon_inference_latency_seconds", ((_Q, "0.99"),), scale=1e-3),
    "error_rate": Export("cvmon_inference_error_ratio"),
    "confusion": Export(
        "cvmon_confusion_matrix_predictions", class_label=("true_class", "predicted_class"), separator=CELL_SEPARATOR
    ),
    "estimated_accuracy": Export("cvmon_estimated_accuracy_ratio"),
    "drift_score": Export("cvmon_drift_score", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
    "drift_p_value": Export("cvmon_drift_p_value", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
    "drift_detected": Export("cvmon_drift_detected", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
}
for _export in EXPORTS.values():  # the names table is the single source of names
    assert _export.name in METRIC, _export.name


class StoredMetricsCollector(Collector):
    """Model quality, counters and job runs, read from the database at scrape time."""

    def __init__(self, engine: Engine, cohort_keys: Sequence[str], allows_model: Callable[[str], bool] = lambda _: True) -> None:
        self.engine = engine
        self.cohort_keys = tuple(cohort_keys)
        #: A scrape with a key bound to some models sees only those models.
        self.allows_model = allows_model

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            latest = conn.execute(
                sa.select(
                    t.metric_latest.c.model, t.metric_latest.c.window, t.metric_latest.c.version,
                    t.metric_latest.c.cohort_key, t.metric_latest.c.cohort_value, t.metric_latest.c.metric,
                    t.metric_latest.c["class"], t.metric_latest.c.value,
                ).where(t.metric_latest.c.metric.in_(list(EXPORTS)), t.metric_latest.c.value.is_not(None))
            ).all()  # fmt: skip
            versions = conn.execute(
                sa.select(t.model_versions.c.model, t.model_versions.c.version, t.model_versions.c.predictions,
                          t.model_versions.c.errors, t.model_versions.c.labelled)
            ).all()  # fmt: skip
            runs = conn.execute(sa.select(t.job_runs)).all()
        allowed = self.allows_model
        yield from self._quality([r for r in latest if allowed(r.model)])
        yield from self._counters([r for r in versions if allowed(r.model)])
        yield from self._jobs([r for r in runs if allowed(r.model)])

    def _quality(self, rows: Sequence[Any]) -> Iterator[Metric]:
        families: dict[str, GaugeMetricFamily] = {}
        label_names: dict[str, list[str]] = {}
        samples: dict[str, list[tuple[list[str], float]]] = defaultdict(list)
        for model, window, version, cohort_key, cohort_value, metric, cls, value in rows:
            export = EXPORTS[metric]
            spec = METRIC[export.name]
            if cohort_key and not spec.cohort_labels:
                continue  # e.g. reliability bins are exported for whole versions only
            if cohort_key and cohort_key not in self.cohort_keys:
                continue
            names = label_names.get(export.name)
            if names is None:
                names = list(spec.labels) + (list(self.cohort_keys) if spec.cohort_labels else [])
                label_names[export.name] = names
            labels = {"model": model, "version": version, "window": window, **dict(export.labels)}
            if isinstance(export.class_label, tuple):
                first, second = export.class_label
                labels[first], _, labels[second] = cls.partition(export.separator)
            elif export.class_label:
                labels[export.class_label] = cls
            if spec.cohort_labels:
                for key in self.cohort_keys:
                    labels[key] = cohort_value if key == cohort_key else ""
            samples[export.name].append(([labels.get(n, "") for n in names], value * export.scale))
        for name, values in samples.items():
            family = families.setdefault(name, GaugeMetricFamily(name, METRIC[name].help, labels=label_names[name]))
            for label_values, value in values:
                family.add_metric(label_values, value)
            yield family

    def _counters(self, rows: Sequence[Any]) -> Iterator[Metric]:
        for name, column in (
            ("cvmon_predictions_total", 2),
            ("cvmon_inference_errors_total", 3),
            ("cvmon_ground_truth_total", 4),
        ):
            spec = METRIC[name]
            # prometheus_client appends _total to counter sample names itself
            family = CounterMetricFamily(name.removesuffix("_total"), spec.help, labels=list(spec.labels))
            for row in rows:
                family.add_metric([row[0], row[1]], float(row[column]))
            yield family

    def _jobs(self, rows: Sequence[Any]) -> Iterator[Metric]:
        duration = GaugeMetricFamily("cvmon_job_duration_seconds", METRIC["cvmon_job_duration_seconds"].help, labels=["job", "model"])
        success = GaugeMetricFamily(
            "cvmon_job_last_success_timestamp_seconds", METRIC["cvmon_job_last_success_timestamp_seconds"].help, labels=["job", "model"]
        )
        failures = CounterMetricFamily("cvmon_job_failures", METRIC["cvmon_job_failures_total"].help, labels=["job", "model"])
        for row in rows:
            if row.last_duration_seconds is not None:
                duration.add_metric([row.job, row.model], row.last_duration_seconds)
            if row.last_success is not None:
                success.add_metric([row.job, row.model], row.last_success.timestamp())
            failures.add_metric([row.job, row.model], float(row.failures))
        yield from (duration, success, failures)
