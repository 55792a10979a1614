"""The quality series of /metrics: Prometheus text that Prometheus's own tools read back exactly,
re-read only for models whose stored results changed."""

from __future__ import annotations

import math
import subprocess
from datetime import UTC, datetime, timedelta

from prometheus_client.parser import text_string_to_metric_families

from monitor.server.exporters.collectors import QualityExposition
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.latest import replace_latest
from monitor.server.store.tables import CELL_SEPARATOR
from tests.slo.golden import require_promtool

END = datetime(2026, 11, 20, 15, tzinfo=UTC)
HOSTILE = 'a "quoted" back\\slash\nnew line, {braces} and ünïcode'


def row(model: str, metric: str, value: float, *, cls: str = "", version: str = "v1", cohort: tuple[str, str] = ("", "")) -> dict:
    return {
        "model": model, "window": "1d", "version": version, "cohort_key": cohort[0], "cohort_value": cohort[1],
        "metric": metric, "class": cls, "window_start": END - timedelta(days=1), "window_end": END, "value": value,
        "sample_count": 10, "label_coverage": 1.0, "computed_at": END,
    }  # fmt: skip


def store(engine, model: str, rows: list[dict]) -> None:
    with write_transaction(engine) as conn:
        replace_latest(conn, model, ["1d"], t.metric_latest.c.metric.is_not(None), rows)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def render(engine, exposition: QualityExposition, *models: str) -> str:
    with engine.connect() as conn:
        return exposition.text(conn, lambda m: m in models)


def test_rows_become_series_with_every_label_value_intact(db, model_name):
    store(db.engine, model_name, [
        row(model_name, "accuracy", 0.91),
        row(model_name, "accuracy", 0.5, cohort=("camera", HOSTILE)),
        row(model_name, "precision", 0.25, cls=HOSTILE, version=HOSTILE),
        row(model_name, "confusion", 7.0, cls=f"cat{CELL_SEPARATOR}{HOSTILE}"),
        row(model_name, "latency_p99_ms", 250.0),
        row(model_name, "ece", math.inf),
        row(model_name, "reliability_accuracy", 0.4, cls="3", cohort=("camera", "cam-1")),  # whole versions only
        row(model_name, "accuracy", 0.1, cohort=("site", "berlin")),  # not a configured cohort key
        row(model_name, "brier", 0.2),  # stored for the API, not exported
        row(model_name, "cost_per_1k", 0.0508, cohort=("camera", "cam-1")),
        row(model_name, "krippendorff_alpha", -0.25),  # worse than chance
        row(model_name, "label_agreement", 0.5),
        row(model_name, "multi_annotated_coverage", 0.0, cohort=("camera", HOSTILE)),
        row(model_name, "fleiss_kappa", 0.3),  # stored for the API, not exported
    ])  # fmt: skip
    text = render(db.engine, QualityExposition(("camera",)), model_name)
    base = {"model": model_name, "version": "v1", "window": "1d"}
    assert samples(text) == {
        ("cvmon_accuracy_ratio", frozenset({**base, "camera": ""}.items())): 0.91,
        ("cvmon_accuracy_ratio", frozenset({**base, "camera": HOSTILE}.items())): 0.5,
        ("cvmon_precision_ratio", frozenset({**base, "version": HOSTILE, "class": HOSTILE, "camera": ""}.items())): 0.25,
        ("cvmon_confusion_matrix_predictions", frozenset({**base, "true_class": "cat", "predicted_class": HOSTILE}.items())): 7.0,
        ("cvmon_inference_latency_seconds", frozenset({**base, "quantile": "0.99", "camera": ""}.items())): 0.25,
        ("cvmon_ece_ratio", frozenset({**base, "camera": ""}.items())): math.inf,
        ("cvmon_cost_per_1k_inferences", frozenset({**base, "camera": "cam-1"}.items())): 0.0508,
        ("cvmon_label_krippendorff_alpha", frozenset({**base, "camera": ""}.items())): -0.25,
        ("cvmon_label_agreement_ratio", frozenset({**base, "camera": ""}.items())): 0.5,
        ("cvmon_label_multi_annotated_coverage_ratio", frozenset({**base, "camera": HOSTILE}.items())): 0.0,
    }  # fmt: skip
    # Prometheus's own parser agrees the text is well formed (HELP and TYPE once per family)
    check = subprocess.run([require_promtool(), "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_scrape_rereads_only_the_models_whose_rows_changed(db, model_name, monkeypatch):
    a, b = f"{model_name}-a", f"{model_name}-b"
    store(db.engine, a, [row(a, "accuracy", 0.8)])
    store(db.engine, b, [row(b, "accuracy", 0.6)])
    exposition = QualityExposition(())
    read: list[list[str]] = []
    render_models = exposition.renderer.render
    monkeypatch.setattr(exposition.renderer, "render", lambda conn, models: read.append(list(models)) or render_models(conn, models))

    first = samples(render(db.engine, exposition, a, b))
    assert read == [[a, b]]
    assert render(db.engine, exposition, a, b) == render(db.engine, exposition, a, b) and read == [[a, b]]

    store(db.engine, b, [row(b, "accuracy", 0.65), row(b, "recall", 0.5, cls="dog")])
    second = samples(render(db.engine, exposition, a, b))
    assert read == [[a, b], [b]]
    changed = {key: value for key, value in second.items() if first.get(key) != value}
    assert changed == {
        ("cvmon_accuracy_ratio", frozenset({"model": b, "version": "v1", "window": "1d"}.items())): 0.65,
        ("cvmon_recall_ratio", frozenset({"model": b, "version": "v1", "window": "1d", "class": "dog"}.items())): 0.5,
    }

    # a key bound to one model sees that model only, from the same cache
    assert {dict(labels)["model"] for _, labels in samples(render(db.engine, exposition, a))} == {a}
    assert read == [[a, b], [b]]
