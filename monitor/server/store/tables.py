"""SQLAlchemy Core tables: the schema Alembic migrations create and ``alembic check`` compares.

Every key starts with ``model`` so the schema distributes by model (Citus) and tenants stay apart.
Arrays are stored packed (little-endian bytes) and read back with ``numpy.frombuffer``:

==================  ==========  ======================================================
column              dtype       shape
==================  ==========  ======================================================
probabilities       float32     (n_classes,)
boxes               float32     (n, 4) as x1, y1, x2, y2 in pixels
box_classes         int32       (n,) class indices into the model's class list
box_scores          float32     (n,)
iscrowd             uint8       (n,)
embedding           float16/32  (dim,); ``dtype`` says which (2 or 4 bytes per value)
==================  ==========  ======================================================

On PostgreSQL the tables that grow with traffic (predictions, embeddings, ground_truth) are
range-partitioned by day on the prediction time; ``store.partitions`` creates partitions ahead
and retention drops whole partitions. Ground truth is partitioned by the time of the
*prediction* it labels, so a window's predictions and their labels live in matching partitions;
ground truth whose prediction has not arrived yet waits in ``ground_truth_pending``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    REAL,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


class UTCDateTime(TypeDecorator[datetime]):
    """``timestamptz`` on PostgreSQL; integer microseconds since the epoch on SQLite.

    SQLite has no time type: SQLAlchemy's default stores naive text, which loses the offset and
    sorts wrongly across formats. Integers are exact, compact and compare correctly. Values are
    always timezone-aware UTC in Python.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def bind_processor(self, dialect: Dialect) -> Any:
        # elsewhere values pass as they are: no per-value call of an identity on every row a COPY sends
        if dialect.name != "sqlite":
            return self.impl_instance.dialect_impl(dialect).bind_processor(dialect)
        return super().bind_processor(dialect)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None or dialect.name != "sqlite":
            return value
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return (value - _EPOCH) // _US

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return _EPOCH + int(value) * _US
        return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_sqlite_us(value: datetime) -> int:
    """The SQLite storage form of a timestamp (for raw SQL on the embedded default)."""
    return (value - _EPOCH) // _US


JSONType = JSON().with_variant(JSONB(), "postgresql")
ModelName = String(128)
Version = String(64)
PredictionId = String(128)


models = Table(
    "models",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("task", String(16), nullable=False),
    Column("classes", JSONType, nullable=False),
    Column("operating_threshold", Float, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # first revisions of ground truth received, matched to a prediction or still pending
    Column("ground_truth", BigInteger, nullable=False, server_default="0"),
    # which annotation the quality metrics use when annotators disagree: newest | majority | exclude
    # (monitor/server/services/annotations.py)
    Column("label_policy", String(16), nullable=False, server_default="newest"),
    PrimaryKeyConstraint("model"),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("version", Version, nullable=False),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("predictions", BigInteger, nullable=False, server_default="0"),
    Column("errors", BigInteger, nullable=False, server_default="0"),
    # predictions of this version that have ground truth
    Column("labelled", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("model", "version"),
)

predictions = Table(
    "predictions",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("model_version", Version, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("status", SmallInteger, nullable=False),
    Column("latency_ms", REAL(), nullable=True),
    Column("request_id", Text, nullable=True),
    Column("input_hash", Text, nullable=True),
    Column("cohort", JSONType, nullable=True),
    Column("trace_id", String(32), nullable=True),
    Column("span_id", String(16), nullable=True),
    Column("predicted_class", Integer, nullable=True),
    Column("confidence", REAL(), nullable=True),
    Column("probabilities", LargeBinary, nullable=True),
    Column("boxes", LargeBinary, nullable=True),
    Column("box_classes", LargeBinary, nullable=True),
    Column("box_scores", LargeBinary, nullable=True),
    # what the inference call used (the record's optional ``resources``; monitor.wire.Resources)
    Column("device", String(128), nullable=True),
    Column("batch_size", Integer, nullable=True),
    Column("cpu_time_ms", REAL(), nullable=True),
    Column("gpu_utilization_ratio", REAL(), nullable=True),
    Column("gpu_memory_bytes", BigInteger, nullable=True),
    PrimaryKeyConstraint("model", "prediction_id", "ts"),
    Index("ix_predictions_model_ts", "model", "ts"),
    postgresql_partition_by="RANGE (ts)",
)

#: The identity of every stored prediction, whatever its timestamp: ``predictions`` is partitioned
#: by day and can only be unique per day, so a batch claims its ids here first
#: (monitor.server.store.writes.claim_prediction_ids). ``ts`` is the stored row's; retention
#: deletes an identity with its prediction.
prediction_ids = Table(
    "prediction_ids",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "prediction_id"),
    Index("ix_prediction_ids_ts", "ts"),
)

#: Embeddings apart from predictions: they are most of the bytes and are kept for a shorter time.
embeddings = Table(
    "embeddings",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("ts", UTCDateTime, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("model_version", Version, nullable=False),
    Column("dtype", SmallInteger, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    PrimaryKeyConstraint("model", "ts", "prediction_id"),
    postgresql_partition_by="RANGE (ts)",
)

_GROUND_TRUTH_VALUES = (
    ("labelled_at", UTCDateTime, False),
    ("received_at", UTCDateTime, False),
    ("label", Integer, True),
    ("boxes", LargeBinary, True),
    ("box_classes", LargeBinary, True),
    ("iscrowd", LargeBinary, True),
)

ground_truth = Table(
    "ground_truth",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("prediction_ts", UTCDateTime, nullable=False),
    *(Column(name, type_, nullable=nullable) for name, type_, nullable in _GROUND_TRUTH_VALUES),
    # prediction time before id: the evaluation reads an hour of labels as one index range
    PrimaryKeyConstraint("model", "prediction_ts", "prediction_id"),
    postgresql_partition_by="RANGE (prediction_ts)",
)

ground_truth_pending = Table(
    "ground_truth_pending",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    *(Column(name, type_, nullable=nullable) for name, type_, nullable in _GROUND_TRUTH_VALUES),
    PrimaryKeyConstraint("model", "prediction_id"),
)

#: Every annotator's newest label of a prediction (``annotator`` "" when the record named none),
#: kept apart from ``ground_truth``, which holds the one label the quality metrics use: the
#: model's ``label_policy`` derives it from these (monitor/server/services/annotations.py).
#: Classification labels only. Not partitioned: an annotation may come before its prediction.
label_annotations = Table(
    "label_annotations",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("annotator", String(128), nullable=False),
    Column("labelled_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("label", Integer, nullable=False),
    # a reviewed reference label (the record's ``audit: true``)
    Column("audit", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("model", "prediction_id", "annotator"),
    Index("ix_label_annotations_model_received_at", "model", "received_at"),
)

#: Predictions whose label the ``exclude`` policy took back from ``ground_truth`` (or
#: ``ground_truth_pending``) because their annotators disagree. ``counted``: the label was in
#: ``ground_truth``, so the prediction's first label is already counted (per-version labelled
#: counter, SLO events); when the annotators agree again the label returns without a second count.
withdrawn_labels = Table(
    "withdrawn_labels",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("counted", Boolean, nullable=False),
    Column("withdrawn_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "prediction_id"),
)

#: Hours (of prediction time) whose stored data changed since they were last evaluated.
dirty_hours = Table(
    "dirty_hours",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("hour_start", UTCDateTime, nullable=False),
    Column("marked_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "hour_start"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(16), nullable=False),
    Column("name", String(128), nullable=False),
    # sha256 of the secret: keys are 256-bit random, so a slow password hash buys nothing
    Column("secret_sha256", LargeBinary(32), nullable=False),
    Column("scopes", JSONType, nullable=False),
    # null: every model
    Column("models", JSONType, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("key_id"),
)

#: Console sign-ins (monitor/server/console): the SHA-256 of the random session token the cookie
#: holds, the key it was opened with, its CSRF token and when it ends. Kept in the database rather
#: than in a signed cookie so that signing out or revoking the key ends it on every replica at once.
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("session_sha256", LargeBinary(32), nullable=False),
    Column("key_id", String(16), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("session_sha256"),
    Index("ix_console_sessions_expires_at", "expires_at"),
)

#: Tables range-partitioned by day on PostgreSQL, with their partition column.
PARTITIONED: dict[str, str] = {"predictions": "ts", "embeddings": "ts", "ground_truth": "prediction_ts"}


# --------------------------------------------------------------------------------------------
# evaluation (monitor.server.jobs.evaluate)

#: Mergeable per-hour evaluation state of one slice: a model version, whole or one cohort value.
#: ``cohort_key`` and ``cohort_value`` are empty for the whole version. The state of an hour's
#: slice is the merge of its *parts*: part 0, computed from the hour's rows, and one part per
#: evaluate run that merged late labels into the hour (what those labels add, nothing else), so
#: a trickle of labels writes a trickle of bytes rather than the hour's whole state again.
eval_states = Table(
    "eval_states",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("hour_start", UTCDateTime, nullable=False),
    Column("version", Version, nullable=False),
    Column("cohort_key", String(64), nullable=False),
    Column("cohort_value", String(256), nullable=False),
    Column("predictions", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("labelled", BigInteger, nullable=False),
    # monitor.metrics states (to_bytes), null when the slice has nothing of that kind
    Column("classification", LargeBinary, nullable=True),
    Column("calibration", LargeBinary, nullable=True),
    Column("detection", LargeBinary, nullable=True),
    Column("latency", LargeBinary, nullable=True),
    Column("label_latency", LargeBinary, nullable=True),
    Column("computed_at", UTCDateTime, nullable=False),
    Column("part", Integer, nullable=False, server_default="0"),
    # annotator agreement of the slice's predictions and its usage for cost per inference
    # (monitor.metrics AgreementState, CostState); null when the slice has none
    Column("agreement", LargeBinary, nullable=True),
    Column("cost", LargeBinary, nullable=True),
    PrimaryKeyConstraint("model", "hour_start", "version", "cohort_key", "cohort_value", "part"),
)

#: Predictions that gained their first ground truth after their hour was evaluated: the evaluate
#: job merges just these into the hour's state instead of recomputing the hour.
label_increments = Table(
    "label_increments",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_ts", UTCDateTime, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("logged_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "prediction_ts", "prediction_id"),
)

#: A class name, or a confusion cell: two class names (up to 128 characters each) and a separator.
MetricClass = String(2 * 128 + 1)

_METRIC_POINT = (
    ("value", Float, True),  # null: undefined (e.g. precision of a class never predicted), never 0
    ("sample_count", BigInteger, False),
    ("label_coverage", Float, True),
    ("computed_at", UTCDateTime, False),
)

#: How the ``class`` column of metric rows encodes two names: a confusion cell is
#: ``<true class><CELL_SEPARATOR><predicted class>`` (class names may hold any printable text, so a
#: control character separates them); a drift row is ``<detector><FEATURE_SEPARATOR><feature>``.
CELL_SEPARATOR = "\x1f"
FEATURE_SEPARATOR = ":"

#: Metric history: one row per metric, class and slice of an aligned window (1h windows start on
#: the hour, 1d at 00:00 UTC, 7d on Mondays); the window in progress is updated until it ends.
metric_points = Table(
    "metric_points",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("window", String(8), nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    Column("version", Version, nullable=False),
    Column("cohort_key", String(64), nullable=False),
    Column("cohort_value", String(256), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("class", MetricClass, nullable=False),
    *(Column(name, type_, nullable=nullable) for name, type_, nullable in _METRIC_POINT),
    # no unique index over the eight key columns: writers replace whole windows under their job's
    # lock, and a unique index makes every rewritten row visit the dead row it replaced
    # (migrations/versions/0010)
    Index("ix_metric_points_window", "model", "window", "window_start"),
)

#: The rolling windows ending at the latest evaluated hour: what /metrics serves.
metric_latest = Table(
    "metric_latest",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("window", String(8), nullable=False),
    Column("version", Version, nullable=False),
    Column("cohort_key", String(64), nullable=False),
    Column("cohort_value", String(256), nullable=False),
    Column("metric", String(64), nullable=False),
    Column("class", MetricClass, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("window_end", UTCDateTime, nullable=False),
    *(Column(name, type_, nullable=nullable) for name, type_, nullable in _METRIC_POINT),
    PrimaryKeyConstraint("model", "window", "version", "cohort_key", "cohort_value", "metric", "class"),
)

#: A counter per model, raised in the same transaction as every change to its ``metric_latest``
#: rows: /metrics keeps each model's rendered series until its counter moves
#: (monitor/server/exporters/collectors.py, QualityExposition).
metric_latest_generations = Table(
    "metric_latest_generations",
    metadata,
    Column("model", ModelName, primary_key=True),
    Column("generation", BigInteger, nullable=False),
)

#: The last run of each scheduled job per model, shared by every scheduler process.
job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(32), nullable=False),
    Column("model", ModelName, nullable=False),
    Column("last_started", UTCDateTime, nullable=True),
    Column("last_success", UTCDateTime, nullable=True),
    Column("last_duration_seconds", Float, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("runs", BigInteger, nullable=False, server_default="0"),
    Column("failures", BigInteger, nullable=False, server_default="0"),
    PrimaryKeyConstraint("job", "model"),
)


# --------------------------------------------------------------------------------------------
# SLOs (monitor.server.slo)

SloName = String(100)

#: SLO events counted per minute of the time they became known (stored, labelled, evaluated).
#: Every API replica adds to the same rows, so the exported counters are the sums of these rows
#: and never go back. The ``slo`` job folds rows older than the SLO's alert windows into hourly
#: rows and rows older than its window into one row at 1970-01-01 (the running total), which
#: keeps the table, and a scrape, small without changing any sum.
slo_events = Table(
    "slo_events",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("slo", SloName, nullable=False),
    Column("version", Version, nullable=False),
    Column("minute", UTCDateTime, nullable=False),
    Column("events", BigInteger, nullable=False),
    Column("bad", BigInteger, nullable=False),
    PrimaryKeyConstraint("model", "slo", "version", "minute"),
)

#: Evaluation hours already counted as an event of a time-slice SLO (ece, drift, map): counted
#: once, never changed afterwards, so the counters stay monotonic.
slo_slices = Table(
    "slo_slices",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("slo", SloName, nullable=False),
    Column("version", Version, nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("value", Float, nullable=False),
    Column("sample_count", BigInteger, nullable=False),
    Column("bad", SmallInteger, nullable=False),
    Column("counted_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "slo", "version", "window_start"),
)

#: Maintenance silences of the built-in notifier (``cvmon silence add``); ``slo`` null: every SLO.
silences = Table(
    "silences",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("silence_id", String(16), nullable=False),
    Column("slo", SloName, nullable=True),
    Column("starts_at", UTCDateTime, nullable=False),
    Column("ends_at", UTCDateTime, nullable=False),
    Column("created_by", String(128), nullable=False),
    Column("comment", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "silence_id"),
)

#: The built-in notifier's incidents: one row per notification group (model, SLO, version,
#: severity), for deduplication and the resolved notification. ``version`` is empty when alerts
#: are evaluated over the sum of versions.
notifications = Table(
    "notifications",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("slo", SloName, nullable=False),
    Column("version", Version, nullable=False),
    Column("severity", String(8), nullable=False),
    # firing | resolved
    Column("state", String(8), nullable=False),
    Column("fingerprint", String(16), nullable=False),
    Column("first_fired", UTCDateTime, nullable=False),
    # when the firing notification of this incident was delivered (null: not yet)
    Column("last_sent", UTCDateTime, nullable=True),
    Column("resolved_at", UTCDateTime, nullable=True),
    # when the resolved notification was delivered (null: not yet, or nothing to resolve)
    Column("resolved_sent", UTCDateTime, nullable=True),
    # the alerts (long and short window in seconds) that fired during the incident
    Column("alerts", JSONType, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "slo", "version", "severity"),
)


# --------------------------------------------------------------------------------------------
# drift (monitor.server.jobs.drift) and weekly reports (monitor.server.reports)

#: Which data a model version's drift reference is fitted on. ``kind``: ``first`` (the first
#: ``size`` predictions after the version appeared: the default), ``range`` (predictions in
#: [start, end), optionally of ``source_version``), set through PUT /v1/models/{model}/reference.
#: ``version`` "" pins one reference for every version of the model.
drift_reference_specs = Table(
    "drift_reference_specs",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("version", Version, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("source_version", Version, nullable=True),
    Column("range_start", UTCDateTime, nullable=True),
    Column("range_end", UTCDateTime, nullable=True),
    Column("size", Integer, nullable=True),
    Column("set_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "version"),
)

#: A fitted detector (``detectors.to_bytes``) per model version, detector and feature: the
#: compact reference summary, fitted once and reused by every drift run.
drift_references = Table(
    "drift_references",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("version", Version, nullable=False),
    Column("detector", String(32), nullable=False),
    Column("feature", String(64), nullable=False),
    Column("summary", LargeBinary, nullable=False),
    Column("n_reference", BigInteger, nullable=False),
    Column("reference_start", UTCDateTime, nullable=False),
    Column("reference_end", UTCDateTime, nullable=False),
    Column("fitted_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "version", "detector", "feature"),
)

#: Aligned windows the drift job has scored, with what they were scored on: the window's
#: predictions (status ok, from the evaluation's hour states) and a digest of the fitted
#: references. A window is scored again only when either changes (late predictions, a new
#: reference or calibration), and a window too small to score is not read again.
drift_windows = Table(
    "drift_windows",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("window", String(8), nullable=False),
    Column("window_start", UTCDateTime, nullable=False),
    Column("predictions", BigInteger, nullable=False),
    Column("references", String(64), nullable=False),
    Column("scored_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "window", "window_start"),
)

#: Weekly HTML reports, kept for ``reports.retention_weeks``.
reports = Table(
    "reports",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("report_id", String(32), nullable=False),
    # ISO week, e.g. 2026-W47
    Column("week", String(10), nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("generated_at", UTCDateTime, nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("html", LargeBinary, nullable=False),
    PrimaryKeyConstraint("model", "report_id"),
    Index("ix_reports_model_period_start", "model", "period_start"),
)


# --------------------------------------------------------------------------------------------
# canary gates and automation webhooks (monitor.server.services.canary, .automation)

#: The latest decision of each compared (baseline, candidate) pair, per metric and ``overall``:
#: what ``cvmon_canary_decision`` exports and what a verdict change is detected against.
canary_decisions = Table(
    "canary_decisions",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("baseline", Version, nullable=False),
    Column("candidate", Version, nullable=False),
    Column("metric", String(200), nullable=False),
    # 1 pass, 0 inconclusive, -1 fail
    Column("decision", SmallInteger, nullable=False),
    Column("gating", SmallInteger, nullable=False),
    Column("estimate", Float, nullable=True),
    Column("low", Float, nullable=True),
    Column("high", Float, nullable=True),
    Column("samples", BigInteger, nullable=False),
    Column("labels", BigInteger, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("evaluated_at", UTCDateTime, nullable=False),
    PrimaryKeyConstraint("model", "baseline", "candidate", "metric"),
)

#: The automation outbox: an event is written in the transaction of what caused it, once (its id
#: is derived from what happened, so emitting it again is a no-op), with one delivery row per
#: configured endpoint that takes it.
automation_events = Table(
    "automation_events",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("payload", JSONType, nullable=False),
    PrimaryKeyConstraint("model", "event_id"),
    Index("ix_automation_events_model_created_at", "model", "created_at"),
)

#: One event to one endpoint: pending until a 2xx (delivered) or until its attempts run out or a
#: 4xx refuses it (failed). ``next_attempt_at`` schedules retries with backoff.
automation_deliveries = Table(
    "automation_deliveries",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("endpoint", String(64), nullable=False),
    # pending | delivered | failed
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    PrimaryKeyConstraint("model", "event_id", "endpoint"),
    Index("ix_automation_deliveries_state_next", "state", "next_attempt_at"),
)

#: Every attempt, written (committed) before the request is sent and completed after it: an
#: attempt without an outcome is one a sender was making when it stopped.
automation_attempts = Table(
    "automation_attempts",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("endpoint", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    PrimaryKeyConstraint("model", "event_id", "endpoint", "attempt"),
)


# --------------------------------------------------------------------------------------------
# samples, their access log and the labelling queues (monitor.server.services.samples, .queues)

SampleId = String(32)

#: Sample images: at most one per prediction. The bytes are in the object store under
#: ``object_key``, sealed with AES-GCM under ``key_id``; this row is their metadata. ``sha256`` and
#: ``size_bytes`` are of the stored plaintext (after masking, metadata stripped). ``faces`` /
#: ``plates``: regions found; ``masking``: the policy applied (``faces:mask,plates:keep``);
#: ``exposed``: stored unmasked under a ``keep`` policy, so a view of it is a PII exposure.
samples = Table(
    "samples",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("sample_id", SampleId, nullable=False),
    Column("captured_at", UTCDateTime, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("reason", String(16), nullable=False),
    Column("media_type", String(16), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    # the size of the image the model saw, when the SDK shrank it: boxes are in its pixels
    Column("source_width", Integer, nullable=True),
    Column("source_height", Integer, nullable=True),
    Column("size_bytes", Integer, nullable=False),
    Column("sha256", LargeBinary(32), nullable=False),
    Column("faces", SmallInteger, nullable=False),
    Column("plates", SmallInteger, nullable=False),
    Column("masking", String(64), nullable=False),
    Column("exposed", Boolean, nullable=False),
    Column("key_id", String(32), nullable=False),
    Column("object_key", String(400), nullable=False),
    PrimaryKeyConstraint("model", "prediction_id"),
    Index("ix_samples_model_sample_id", "model", "sample_id", unique=True),
    Index("ix_samples_model_captured_at", "model", "captured_at"),
)

#: Every view and export of a sample: who (``principal``: an API key id, ``auth-disabled``, or a
#: console user), when, which sample and how (``action``: view, export). ``exposed`` copies the
#: sample's flag: such a row is one PII exposure event.
sample_access = Table(
    "sample_access",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("access_id", String(32), nullable=False),
    Column("sample_id", SampleId, nullable=False),
    Column("principal", String(128), nullable=False),
    Column("action", String(16), nullable=False),
    Column("exposed", Boolean, nullable=False),
    Column("detail", String(256), nullable=False),
    PrimaryKeyConstraint("model", "at", "access_id"),
    Index("ix_sample_access_model_sample_id", "model", "sample_id"),
)

#: Running totals per model that /metrics exports as counters (``stored``, ``dropped_faces``,
#: ``dropped_plates``, ``views``, ``exports``, ``exposures``): raised in the transaction of what they
#: count, never lowered, so retention of samples and of the access log never turns a counter back.
sample_counts = Table(
    "sample_counts",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("name", String(32), nullable=False),
    Column("value", BigInteger, nullable=False),
    PrimaryKeyConstraint("model", "name"),
)

#: Labelling queues: a named selection of a model's samples to send to labellers (rebuilt whole).
label_queues = Table(
    "label_queues",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("queue", String(64), nullable=False),
    Column("strategy", String(32), nullable=False),
    Column("params", JSONType, nullable=False),
    Column("built_at", UTCDateTime, nullable=False),
    Column("size", Integer, nullable=False),
    PrimaryKeyConstraint("model", "queue"),
)

#: The predictions of a queue in the order labellers should take them; labelled when their
#: prediction has ground truth (read at query time, so labels from any source count).
label_queue_items = Table(
    "label_queue_items",
    metadata,
    Column("model", ModelName, nullable=False),
    Column("queue", String(64), nullable=False),
    Column("prediction_id", PredictionId, nullable=False),
    Column("rank", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("added_at", UTCDateTime, nullable=False),
    Column("exported_at", UTCDateTime, nullable=True),
    PrimaryKeyConstraint("model", "queue", "prediction_id"),
)
