"""The one table of Prometheus metric names cvmon exports.

alerts/ and grafana/ are generated from and tested against this table, so renaming a metric here
breaks a test instead of a dashboard. Conventions: prefix ``cvmon_``, base units (``_seconds``),
``_ratio`` for fractions in [0, 1], ``_total`` for counters; label sets are bounded (model,
version, window, class, slo, detector, ...). Metrics marked ``cohort_labels`` also carry the
cohort keys configured for slicing (e.g. ``camera``); a series without a cohort is the whole
model version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Kind = Literal["gauge", "counter", "histogram", "summary"]


@dataclass(frozen=True, slots=True)
class MetricName:
    name: str
    kind: Kind
    help: str
    labels: tuple[str, ...]
    #: Whether the configured cohort keys are added as labels.
    cohort_labels: bool = False


_QUALITY = ("model", "version", "window")

METRICS: Final[tuple[MetricName, ...]] = (
    # model quality, from stored evaluation results (a scrape never computes)
    MetricName("cvmon_accuracy_ratio", "gauge", "Top-1 accuracy over labelled predictions in the window.", _QUALITY, True),
    MetricName("cvmon_top5_accuracy_ratio", "gauge", "Top-5 accuracy over labelled predictions in the window.", _QUALITY, True),
    MetricName("cvmon_precision_ratio", "gauge", "Per-class precision in the window.", (*_QUALITY, "class"), True),
    MetricName("cvmon_recall_ratio", "gauge", "Per-class recall in the window.", (*_QUALITY, "class"), True),
    MetricName("cvmon_f1_ratio", "gauge", "Per-class F1 in the window.", (*_QUALITY, "class"), True),
    MetricName("cvmon_map_ratio", "gauge", "COCO mean average precision; iou is 0.50:0.95, 0.50 or 0.75.", (*_QUALITY, "iou"), True),
    MetricName("cvmon_ap_ratio", "gauge", "COCO per-class average precision; iou is 0.50:0.95 or 0.50.", (*_QUALITY, "class", "iou"), True),
    MetricName("cvmon_ece_ratio", "gauge", "Expected calibration error (top label, 15 equal-width bins, L1).", _QUALITY, True),
    MetricName("cvmon_reliability_accuracy_ratio", "gauge", "Reliability diagram: accuracy of the predictions whose confidence falls in the bin (bin = lower edge).", (*_QUALITY, "bin"), False),
    MetricName("cvmon_reliability_confidence_ratio", "gauge", "Reliability diagram: mean confidence in the bin (bin = lower edge).", (*_QUALITY, "bin"), False),
    MetricName("cvmon_labelled_predictions", "gauge", "Labelled predictions the window's quality metrics were computed on.", _QUALITY, True),
    MetricName("cvmon_label_coverage_ratio", "gauge", "Labelled predictions / predictions in the window.", _QUALITY, True),
    # quantiles over the window: summaries (quantile samples only), as the label implies
    MetricName("cvmon_label_latency_seconds", "summary", "Ground-truth time minus prediction time over the window; quantile is 0.5 or 0.95.", (*_QUALITY, "quantile"), False),
    MetricName("cvmon_inference_latency_seconds", "summary", "Inference latency reported with predictions over the window; quantile is 0.5, 0.95 or 0.99.", (*_QUALITY, "quantile"), True),
    MetricName("cvmon_inference_error_ratio", "gauge", "Predictions with status error / all predictions in the window.", _QUALITY, True),
    MetricName("cvmon_confusion_matrix_predictions", "gauge", "Confusion-matrix cell (rows true, columns predicted) in the window.", (*_QUALITY, "true_class", "predicted_class"), False),
    # cost and label quality (the seed's M12 and M10; docs/quality.md)
    MetricName("cvmon_cost_per_1k_inferences", "gauge", "Cost of 1 000 inferences in the window, in the currency of costs: in cvmon.yaml (device-hours priced per device class, plus the fixed cost per 1 000 requests).", _QUALITY, True),
    MetricName("cvmon_label_agreement_ratio", "gauge", "Percent agreement of annotators on the window's multiply-annotated predictions (agreeing pairs of labels within an item).", _QUALITY, True),
    MetricName("cvmon_label_krippendorff_alpha", "gauge", "Krippendorff's alpha (nominal) of the annotators on the window's multiply-annotated predictions: 1 perfect, 0 chance, below 0 worse than chance.", _QUALITY, True),
    MetricName("cvmon_label_multi_annotated_coverage_ratio", "gauge", "Predictions with two or more annotators / predictions in the window: where the agreement sample comes from.", _QUALITY, True),
    # counters read from the database, so every API replica and restart agree
    MetricName("cvmon_predictions_total", "counter", "Predictions stored.", ("model", "version")),
    MetricName("cvmon_ground_truth_total", "counter", "Ground-truth records stored (first revisions).", ("model", "version")),
    MetricName("cvmon_inference_errors_total", "counter", "Predictions stored with status error.", ("model", "version")),
    # drift
    MetricName("cvmon_drift_score", "gauge", "Drift detector score against the pinned reference.", ("model", "version", "window", "detector", "feature"), True),
    MetricName("cvmon_drift_p_value", "gauge", "Drift detector p-value (absent for detectors without one).", ("model", "version", "window", "detector", "feature"), True),
    MetricName("cvmon_drift_effect_size", "gauge", "How much the window differs from the reference: the detector's score (the class-mix total variation distance for chi_square).", ("model", "version", "window", "detector", "feature"), True),
    MetricName("cvmon_drift_min_effect", "gauge", "The effect-size floor: the smallest effect that flags drift (calibrated on the reference unless set per model).", ("model", "version", "window", "detector", "feature"), True),
    MetricName("cvmon_drift_detected", "gauge", "1 when the detector's test rejects at its alpha and the effect size is above its floor, else 0.", ("model", "version", "window", "detector", "feature"), True),
    MetricName("cvmon_estimated_accuracy_ratio", "gauge", "Label-free accuracy estimate from calibrated confidences.", _QUALITY, True),
    # SLOs
    MetricName("cvmon_slo_events_total", "counter", "SLO events counted (all).", ("slo", "model", "version")),
    MetricName("cvmon_slo_bad_events_total", "counter", "SLO events counted as bad.", ("slo", "model", "version")),
    MetricName("cvmon_slo_objective_ratio", "gauge", "SLO objective (fraction of good events).", ("slo", "model")),
    MetricName("cvmon_slo_error_budget_remaining_ratio", "gauge", "Error budget of the model version left over the SLO window (1 = untouched, < 0 = spent).", ("slo", "model", "version")),
    MetricName("cvmon_slo_burn_rate", "gauge", "Error-budget burn rate of the model version over the window (1 = spending exactly the budget).", ("slo", "model", "version", "window")),
    # canary gates and automation (the seed's M13 and M14)
    MetricName("cvmon_canary_decision", "gauge", "Latest canary decision of a compared version pair: 1 pass, 0 inconclusive, -1 fail; metric is a gated metric or overall.", ("model", "baseline", "candidate", "metric")),
    MetricName("cvmon_model_version_first_seen_timestamp_seconds", "gauge", "Unix time of a model version's first prediction.", ("model", "version")),
    MetricName("cvmon_retraining_interval_seconds", "gauge", "Time between the first predictions of the model's two newest versions (retraining frequency).", ("model",)),
    MetricName("cvmon_retraining_requests_total", "counter", "Retraining requests emitted (drift persisting with a quality drop).", ("model",)),
    MetricName("cvmon_automation_events_total", "counter", "Automation events emitted, by type.", ("model", "type")),
    MetricName("cvmon_webhook_deliveries", "gauge", "Automation webhook deliveries by state (pending, delivered, failed).", ("model", "endpoint", "state")),
    # samples, privacy and labelling (the seed's M11 PII-exposure SLI)
    MetricName("cvmon_pii_exposure_events_total", "counter", "Views of sample images stored unmasked (a keep privacy policy): PII exposure events.", ("model",)),
    MetricName("cvmon_sample_access_total", "counter", "Sample images served, by action (view, export); every one is in the access log.", ("model", "action")),
    MetricName("cvmon_samples_stored_total", "counter", "Sample images stored (masked and encrypted).", ("model",)),
    MetricName("cvmon_samples_dropped_total", "counter", "Sample images not stored because of the privacy policy; reason is faces, plates or residual.", ("model", "reason")),
    MetricName("cvmon_labelling_queue_items", "gauge", "Items of a labelling queue still without ground truth.", ("model", "queue")),
    MetricName("cvmon_labelling_queue_age_seconds", "gauge", "How long the oldest unlabelled item of a labelling queue has waited.", ("model", "queue")),
    # the service itself
    MetricName("cvmon_ingest_records_total", "counter", "Records received by the ingest API; outcome is accepted, duplicate or rejected.", ("kind", "outcome")),
    MetricName("cvmon_http_request_duration_seconds", "histogram", "HTTP request duration.", ("method", "route", "status")),
    # `cvmon consume` (NATS JetStream, MQTT), served by each consumer process on its own port
    MetricName("cvmon_consumer_records_total", "counter", "Records taken off the broker; outcome is accepted, duplicate or rejected (dead-lettered).", ("broker", "consumer", "kind", "outcome")),
    MetricName("cvmon_consumer_messages_total", "counter", "Broker messages acknowledged after their records were committed (or dead-lettered).", ("broker", "consumer")),
    MetricName("cvmon_consumer_dead_letters_total", "counter", "Messages published to the dead-letter subject or topic (a malformed message, or one with rejected records).", ("broker", "consumer")),
    MetricName("cvmon_consumer_redelivered_messages_total", "counter", "Messages the broker delivered again (the consumer died or lost its connection before acknowledging).", ("broker", "consumer")),
    MetricName("cvmon_consumer_pending_messages", "gauge", "Messages on the broker the consumer group has not acknowledged yet (NATS: the durable consumer's pending and ack-pending counts).", ("broker", "consumer")),
    MetricName("cvmon_consumer_in_flight_messages", "gauge", "Messages this process holds, received and not yet acknowledged.", ("broker", "consumer")),
    MetricName("cvmon_consumer_lag_seconds", "gauge", "Commit time minus the broker's timestamp of the oldest message of the last committed batch (NATS).", ("broker", "consumer")),
    MetricName("cvmon_consumer_paused", "gauge", "1 while the database fails and the consumer has stopped fetching, else 0.", ("broker", "consumer")),
    MetricName("cvmon_consumer_batch_duration_seconds", "histogram", "Time to store one batch of records (one transaction), retries excluded.", ("broker", "consumer")),
    MetricName("cvmon_consumer_last_commit_timestamp_seconds", "gauge", "Unix time of the consumer's last committed batch.", ("broker", "consumer")),
    # read from the job_runs table, so every process serving /metrics reports the same runs
    MetricName("cvmon_job_duration_seconds", "gauge", "Duration of the job's last run for the model.", ("job", "model")),
    MetricName("cvmon_job_last_success_timestamp_seconds", "gauge", "Unix time of the job's last success for the model.", ("job", "model")),
    MetricName("cvmon_job_failures_total", "counter", "Failed runs of the job for the model.", ("job", "model")),
)  # fmt: skip

METRIC: Final[dict[str, MetricName]] = {m.name: m for m in METRICS}


def series_names(metric: MetricName) -> tuple[str, ...]:
    """The sample names Prometheus stores for a metric (histograms expand to three; cvmon's
    summaries carry their quantiles only, computed over the window, with no _sum or _count)."""
    if metric.kind == "histogram":
        return (f"{metric.name}_bucket", f"{metric.name}_sum", f"{metric.name}_count")
    return (metric.name,)


#: Every series name a PromQL expression may reference.
EXPORTED_SERIES: Final[frozenset[str]] = frozenset(s for m in METRICS for s in series_names(m))
