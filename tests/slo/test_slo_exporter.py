"""The SLO series of GET /metrics, on PostgreSQL and SQLite: counters from the per-minute counts,
objective, error budget and burn rates per model version, and keys bound to a model seeing only
its SLOs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.server.slo.spec import load_slos

NOW = datetime(2026, 11, 20, 10, 15, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # type: ignore[no-untyped-def]
    response = client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
        if s.name.startswith("cvmon_slo_")
    }


def test_slo_series_on_metrics(make_api, model_name):
    other = model_name + "-b"
    slos = load_slos(f"""
slos:
  - {{name: lat, model: {model_name}, sli: latency, objective: 0.99, window: 30d, threshold: 0.05}}
  - {{name: acc, model: {model_name}, sli: accuracy, objective: 0.95, window: 30d}}
  - {{name: b-avail, model: {other}, sli: availability, objective: 0.999, window: 30d}}
""")
    clock = Clock()
    api = make_api(clock=clock, slos=slos)
    m = model_name
    with api.admin() as c:
        for name in (m, other):
            c.put(f"/v1/models/{name}", json={"task": "classification", "classes": ["cat", "dog"]})
        preds = [
            {"prediction_id": f"p{i}", "model": m, "model_version": "v1" if i < 10 else "v2",
             "predicted_class": "cat", "latency_ms": 80.0 if i < 2 else 8.0}
            for i in range(15)
        ]  # fmt: skip
        assert c.post("/v1/predictions", json={"records": preds}).json()["accepted"] == 15
        labels = [{"prediction_id": f"p{i}", "model": m, "label": "dog" if i == 0 else "cat"} for i in range(4)]
        assert c.post("/v1/ground-truth", json={"records": labels}).json()["accepted"] == 4
        got = scrape(c)

        def sample(name: str, **labels: str) -> float:
            return got[(name, tuple(sorted(labels.items())))]

        assert sample("cvmon_slo_events_total", slo="lat", model=m, version="v1") == 10
        assert sample("cvmon_slo_bad_events_total", slo="lat", model=m, version="v1") == 2
        assert sample("cvmon_slo_events_total", slo="lat", model=m, version="v2") == 5
        assert sample("cvmon_slo_bad_events_total", slo="lat", model=m, version="v2") == 0
        assert sample("cvmon_slo_events_total", slo="acc", model=m, version="v1") == 4
        assert sample("cvmon_slo_bad_events_total", slo="acc", model=m, version="v1") == 1
        assert sample("cvmon_slo_objective_ratio", slo="lat", model=m) == 0.99
        # per version: v1 has 2 bad of 10 against a 1 % budget (a 20x burn, the budget overspent
        # 19 times), v2 none of 5
        burn = (2 / 10) / 0.01
        assert sample("cvmon_slo_error_budget_remaining_ratio", slo="lat", model=m, version="v1") == pytest.approx(1 - burn)
        assert sample("cvmon_slo_error_budget_remaining_ratio", slo="lat", model=m, version="v2") == 1.0
        assert sample("cvmon_slo_burn_rate", slo="lat", model=m, version="v1", window="5m") == pytest.approx(burn)
        assert sample("cvmon_slo_burn_rate", slo="lat", model=m, version="v2", window="5m") == 0.0
        assert sample("cvmon_slo_burn_rate", slo="acc", model=m, version="v1", window="3d") == pytest.approx(0.25 / 0.05)
        windows = {
            dict(labels)["window"] for name, labels in got if name == "cvmon_slo_burn_rate" and ("slo", "lat") in labels
        }
        assert windows == {"5m", "30m", "1h", "2h", "6h", "1d", "3d"}
        # every series that describes an SLO names its model
        assert all(dict(labels)["model"] in (m, other) for _, labels in got)
        assert sample("cvmon_slo_objective_ratio", slo="b-avail", model=other) == 0.999  # no events yet: no counters
        assert not any(name.endswith("_total") and ("slo", "b-avail") in labels for name, labels in got)

        # ten minutes later: the 5m window is empty (no burn rate), the counters stay
        clock.now = NOW + timedelta(minutes=10)
        later = scrape(c)
        v1 = (("model", m), ("slo", "lat"), ("version", "v1"))
        assert ("cvmon_slo_burn_rate", (*v1, ("window", "5m"))) not in later
        assert later[("cvmon_slo_burn_rate", (*v1, ("window", "1h")))] == pytest.approx(burn)
        assert {k: v for k, v in later.items() if k[0].endswith("_total")} == {
            k: v for k, v in got.items() if k[0].endswith("_total")
        }

    # a key bound to the other model sees only that model's SLOs
    with api.client(api.create_key(["read"], models=[other])) as c:
        bound = scrape(c)
    assert {dict(labels)["slo"] for _, labels in bound} == {"b-avail"}
