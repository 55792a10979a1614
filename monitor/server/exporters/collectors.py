"""What /metrics reads from the database: a scrape never computes a metric.

:class:`QualityExposition` turns the rows of ``metric_latest`` (written by the evaluate and drift
jobs) into the quality series, :class:`StoredMetricsCollector` the per-version counters and
``job_runs`` into metric families; all names come from :mod:`.names`. Because
every value comes from the database, any API process (or replica) answers a scrape with the same
numbers, and a restart loses none.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine

from monitor.server.exporters.escaping import displayable, escape_help, escape_label_value
from monitor.server.names import METRIC
from monitor.server.services.latest import generations, job_runs, latest_values, version_counters
from monitor.server.services.states import CELL_SEPARATOR


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
#: (``monitor.server.services.drift_features.FEATURE_SEPARATOR``).
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
    "label_latency_p50_seconds": Export("cvmon_label_latency_seconds", ((_Q, "0.5"),)),
    "label_latency_p95_seconds": Export("cvmon_label_latency_seconds", ((_Q, "0.95"),)),
    "latency_p50_ms": Export("cvmon_inference_latency_seconds", ((_Q, "0.5"),), scale=1e-3),
    "latency_p95_ms": Export("cvmon_inference_latency_seconds", ((_Q, "0.95"),), scale=1e-3),
    "latency_p99_ms": Export("cvmon_inference_latency_seconds", ((_Q, "0.99"),), scale=1e-3),
    "error_rate": Export("cvmon_inference_error_ratio"),
    "confusion": Export(
        "cvmon_confusion_matrix_predictions", class_label=("true_class", "predicted_class"), separator=CELL_SEPARATOR
    ),
    "estimated_accuracy": Export("cvmon_estimated_accuracy_ratio"),
    "cost_per_1k": Export("cvmon_cost_per_1k_inferences"),
    "label_agreement": Export("cvmon_label_agreement_ratio"),
    "krippendorff_alpha": Export("cvmon_label_krippendorff_alpha"),
    "multi_annotated_coverage": Export("cvmon_label_multi_annotated_coverage_ratio"),
    "drift_score": Export("cvmon_drift_score", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
    "drift_p_value": Export("cvmon_drift_p_value", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
    "drift_effect_size": Export("cvmon_drift_effect_size", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
    "drift_min_effect": Export("cvmon_drift_min_effect", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
    "drift_detected": Export("cvmon_drift_detected", class_label=_DRIFT, separator=DRIFT_SEPARATOR),
}
for _export in EXPORTS.values():  # the names table is the single source of names
    assert _export.name in METRIC, _export.name


#: Sample values as Prometheus parses them: Go's ParseFloat reads Python's repr of a finite float.
_NON_FINITE = {"inf": "+Inf", "-inf": "-Inf", "nan": "NaN"}


#: The exported quality families, in the order of EXPORTS (each written with HELP and TYPE once).
_FAMILIES: tuple[str, ...] = tuple(dict.fromkeys(export.name for export in EXPORTS.values()))


class ExpositionRenderer:
    """Rows of ``metric_latest`` -> Prometheus sample lines, per model and family.

    Written by hand rather than through prometheus_client's metric families because of the
    volume: 20 models x 50 classes are ~30 000 series, and ``generate_latest`` validates and
    escapes every label *name* of every sample, most of a large scrape's time.
    Here label names come from the names table (validated once, below) and only label values
    are escaped. The configured cohort keys are labels of every cohort-sliced family.
    """

    def __init__(self, cohort_keys: Sequence[str]) -> None:
        self.cohort_keys = tuple(cohort_keys)
        self._label_names = {
            name: list(METRIC[name].labels) + (list(self.cohort_keys) if METRIC[name].cohort_labels else [])
            for name in _FAMILIES
        }
        for names in self._label_names.values():
            for label in names:
                if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                    raise ValueError(f"{label!r} is not a Prometheus label name")

    def render(self, conn: Connection, models: Sequence[str]) -> dict[str, dict[str, str]]:
        """model -> family -> its sample lines (text), from the models' ``metric_latest`` rows."""
        rows = latest_values(conn, models, list(EXPORTS))
        out: dict[str, dict[str, list[str]]] = {model: defaultdict(list) for model in models}
        escaped = _Escaped()
        lines: dict[tuple[str, str], _Line | None] = {}
        for model, window, version, cohort_key, cohort_value, metric, cls, value in rows:
            try:
                line = lines[metric, cohort_key]
            except KeyError:
                line = lines[metric, cohort_key] = self._line(metric, cohort_key)
            if line is None:
                continue
            first, _, second = cls.partition(line.separator) if line.separator else (cls, "", "")
            number = repr(value * line.scale)
            out[model][line.family].append(
                line.template.format(
                    escaped[model], escaped[version], escaped[window], escaped[first], escaped[second],
                    escaped[cohort_value], _NON_FINITE.get(number, number),
                )
            )  # fmt: skip
        return {model: {family: "".join(text) for family, text in families.items()} for model, families in out.items()}

    def _line(self, metric: str, cohort_key: str) -> _Line | None:
        """How a stored row of ``metric`` (and ``cohort_key``) becomes a sample line: a format string
        taking model, version, window, class (or its two halves), cohort value and value; None for a
        row that is not exported (e.g. a cohort row of a metric exported for whole versions)."""
        export = EXPORTS[metric]
        spec = METRIC[export.name]
        if cohort_key and (not spec.cohort_labels or cohort_key not in self.cohort_keys):
            return None
        fields = {"model": "{0}", "version": "{1}", "window": "{2}"}
        fields |= {name: escape_label_value(value).replace("{", "{{").replace("}", "}}") for name, value in export.labels}
        if isinstance(export.class_label, tuple):
            fields |= {export.class_label[0]: "{3}", export.class_label[1]: "{4}"}
        elif export.class_label:
            fields[export.class_label] = "{3}"
        if spec.cohort_labels:
            fields |= {key: "{5}" if key == cohort_key else "" for key in self.cohort_keys}
        labels = ",".join(f'{name}="{fields.get(name, "")}"' for name in self._label_names[export.name])
        return _Line(export.name, f"{export.name}{{{{{labels}}}}} {{6}}\n", export.separator, export.scale)


class QualityExposition:
    """The model-quality series of /metrics as Prometheus text.

    Each model's lines are rendered here, in the API process, from its ``metric_latest`` rows, and
    kept until they change: writers raise the model's counter in ``metric_latest_generations`` in
    the same transaction (:func:`monitor.server.store.latest.replace_latest`), so a scrape reads one
    small table and re-renders only the models evaluated since the previous scrape.
    tests/server/test_exposition.py reads the text back with prometheus_client's parser and
    ``promtool check metrics`` (hostile label values included) and checks which models a scrape
    re-renders.

    One per API process; thread-safe (scrapes run in the threadpool).
    """

    def __init__(self, cohort_keys: Sequence[str]) -> None:
        self.renderer = ExpositionRenderer(cohort_keys)
        #: model -> (generation, family -> sample lines)
        self._models: dict[str, tuple[int, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def text(self, conn: Connection, allows_model: Callable[[str], bool] = lambda _: True) -> str:
        """The exposition of every model ``allows_model`` admits, read through ``conn``."""
        # the counters first: rows committed after this read only make the next scrape re-read
        counters = {m: n for m, n in generations(conn).items() if allows_model(m)}
        with self._lock:
            stale = sorted(m for m, n in counters.items() if m not in self._models or self._models[m][0] != n)
            if stale:
                read = self.renderer.render(conn, stale)
                for model in stale:
                    self._models[model] = (counters[model], read.get(model, {}))
            models = [self._models[m][1] for m in sorted(counters)]
        out: list[str] = []
        for name in _FAMILIES:
            lines = [families[name] for families in models if name in families]
            if lines:
                spec = METRIC[name]
                out.append(f"# HELP {name} {escape_help(spec.help)}\n")
                out.append(f"# TYPE {name} {spec.kind}\n")
                out.extend(lines)
        return "".join(out)


@dataclass(frozen=True, slots=True)
class _Line:
    family: str
    template: str
    separator: str
    scale: float


class _Escaped(dict[str, str]):
    """Label values escaped once per render: most values (models, windows, classes) repeat."""

    def __missing__(self, value: str) -> str:
        self[value] = escaped = escape_label_value(value)
        return escaped


#: Prometheus's label-name syntax.
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class StoredMetricsCollector(Collector):
    """Per-version counters and job runs, read from the database at scrape time (a few rows per
    model; the quality series are :class:`QualityExposition`'s)."""

    def __init__(self, engine: Engine, allows_model: Callable[[str], bool] = lambda _: True) -> None:
        self.engine = engine
        #: A scrape with a key bound to some models sees only those models.
        self.allows_model = allows_model

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            versions = version_counters(conn)
            runs = job_runs(conn)
        allowed = self.allows_model
        yield from self._counters([r for r in versions if allowed(r.model)])
        yield from self._jobs([r for r in runs if allowed(r.model)])

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
                family.add_metric([row[0], displayable(row[1])], float(row[column]))
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
