"""Cost per 1 000 inferences: the documented formula (docs/quality.md) by hand, the merge of its
state, and the ``costs:`` section of cvmon.yaml."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from monitor.errors import ConfigError
from monitor.metrics import CostPrices, CostState, cost_metrics, cost_state
from monitor.server.settings import Settings

CONFIG = """
    costs:
      currency: EUR
      device_hour:
        cpu: 0.10
        "NVIDIA T4": 0.60
        "NVIDIA A100*": 3.00
      per_1k_requests: 0.05
"""


def _settings(tmp_path, text: str) -> Settings:
    path = tmp_path / "cvmon.yaml"
    path.write_text(textwrap.dedent(text))
    return Settings.load({"CVMON_CONFIG": str(path)})


def test_two_versions_on_different_devices_and_batch_sizes_cost_what_the_docs_say(tmp_path):
    prices = _settings(tmp_path, CONFIG).costs
    assert prices is not None and prices.currency == "EUR"
    # v1 on a CPU, one image per call: four calls of 20, 30, 25 and 45 ms
    v1 = cost_state([20.0, 30.0, 25.0, 45.0], devices=["cpu"] * 4, batch_sizes=[1] * 4)
    # v2 on a T4, eight images per call: two calls of 40 and 56 ms, each logged as 8 predictions
    v2 = cost_state([40.0] * 8 + [56.0] * 8, devices=["NVIDIA T4"] * 16, batch_sizes=[8] * 16)

    # by hand (docs/quality.md): v1 held the CPU 0.120 s over 4 requests
    #   0.10 EUR/h × 0.120 s / 3600 + 0.05 EUR × 4 / 1000 = 0.000203333 EUR for 4 inferences
    v1_per_1k = 1000 * (0.10 * 0.120 / 3600 + 0.05 * 4 / 1000) / 4
    # v2: 8 × 40/8 + 8 × 56/8 = 96 ms of T4 over 16/8 = 2 requests
    #   0.60 EUR/h × 0.096 s / 3600 + 0.05 EUR × 2 / 1000 = 0.000116 EUR for 16 inferences
    v2_per_1k = 1000 * (0.60 * 0.096 / 3600 + 0.05 * 2 / 1000) / 16
    assert v1_per_1k == pytest.approx(0.0508333333333, rel=1e-12)
    assert v2_per_1k == pytest.approx(0.00725, rel=1e-12)

    a, b = cost_metrics(v1, prices), cost_metrics(v2, prices)
    assert a.cost_per_1k == pytest.approx(v1_per_1k, rel=1e-12)
    assert b.cost_per_1k == pytest.approx(v2_per_1k, rel=1e-12)
    assert (a.device_seconds, a.requests, b.device_seconds, b.requests) == pytest.approx(
        (0.120, 4, 0.096, 2), rel=1e-12
    )
    # the model as a whole: the merged usage, 20 inferences
    both = cost_metrics(CostState.merge(v1, v2), prices)
    assert both.cost_per_1k == pytest.approx(1000 * (0.000203333333333 + 0.000116) / 20, rel=1e-9)
    assert [(d.device, d.predictions, d.price_per_hour) for d in both.per_device] == [
        ("NVIDIA T4", 16, 0.60),
        ("cpu", 4, 0.10),
    ]


def test_unmetered_unpriced_and_default_device_are_kept_apart():
    prices = CostPrices((("cpu", 0.10), ("NVIDIA A100*", 3.0)))
    state = cost_state(
        [10.0, float("nan"), 30.0, 50.0, 7.0],
        devices=["cpu", "cpu", "AMD MI300X", "NVIDIA A100-SXM4-80GB", None],
        batch_sizes=[1, 1, 4, 2, 0],
    )
    m = cost_metrics(state, prices)
    assert (m.predictions, m.costed, m.unmetered, m.unpriced) == (5, 2, 1, 2)
    # 10 ms of CPU at 0.10/h and 50 ms / 2 of an A100 at 3.00/h, over the 2 costed predictions
    assert m.cost_per_1k == pytest.approx(1000 * (0.10 * 0.010 / 3600 + 3.0 * 0.025 / 3600) / 2, rel=1e-12)
    # predictions that report no device are billed as the default device when one is configured
    m = cost_metrics(state, CostPrices((("cpu", 0.10),), default_device="cpu"))
    assert m.costed == 2 and m.unpriced == 2
    unknown = next(d for d in m.per_device if d.device == "")
    assert unknown.price_per_hour == 0.10 and unknown.device_seconds == pytest.approx(0.007)
    assert cost_metrics(CostState.empty(), prices).cost_per_1k is None


def test_merged_hours_equal_the_whole_window_exactly():
    rng = np.random.default_rng(3)
    n = 5000
    latency = rng.gamma(2.0, 8.0, size=n).astype(np.float32)
    devices = rng.choice(["cpu", "NVIDIA T4", "NVIDIA L4", ""], size=n).tolist()
    batch = rng.choice([1, 4, 8, 32], size=n)
    whole = cost_state(latency, devices=devices, batch_sizes=batch)
    hours = [cost_state(latency[k::7], devices=devices[k::7], batch_sizes=batch[k::7]) for k in range(7)]
    assert CostState.merge(*hours).to_bytes() == whole.to_bytes()
    assert CostState.merge(*reversed(hours)).to_bytes() == whole.to_bytes()
    assert CostState.from_bytes(whole.to_bytes()).to_bytes() == whole.to_bytes()
    prices = CostPrices((("cpu", 0.1), ("NVIDIA *", 0.7)), per_1k_requests=0.01)
    m = cost_metrics(whole, prices)
    # the formula in floating point, row by row, agrees to rounding
    priced = np.array([d != "" for d in devices])
    price = np.array([0.1 if d == "cpu" else 0.7 for d in devices])
    by_row = price * latency.astype(np.float64) / 1000 / batch / 3600 + 0.01 / batch / 1000
    assert m.cost_per_1k == pytest.approx(1000 * by_row[priced].sum() / priced.sum(), rel=1e-12)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param("costs: 3", "costs must be a mapping", id="not-a-mapping"),
        pytest.param("costs: {}", "device_hour must map", id="no-prices"),
        pytest.param("costs: {device_hour: {cpu: -1}}", r"device_hour\['cpu'\] must be a number >= 0", id="negative"),
        pytest.param("costs: {device_hour: {cpu: cheap}}", "must be a number", id="text-price"),
        pytest.param("costs: {device_hour: {cpu: .inf}}", "must be a number", id="infinite"),
        pytest.param("costs: {device_hour: {cpu: 1}, per_1k: 2}", "unknown key 'per_1k'", id="unknown-key"),
        pytest.param("costs: {device_hour: {cpu: 1}, per_1k_requests: true}", "per_1k_requests", id="bool-fixed"),
        pytest.param("costs: {device_hour: {cpu: 1}, default_device: gpu}", "has no price", id="default-unpriced"),
        pytest.param("costs: {device_hour: {cpu: 1}, currency: ''}", "currency", id="empty-currency"),
        pytest.param("costs: {device_hour: [cpu, 1]}", "device_hour must map", id="list"),
    ],
)
def test_bad_cost_config_is_explained(tmp_path, section, message):
    with pytest.raises(ConfigError, match=message) as info:
        _settings(tmp_path, section)
    assert "cvmon.yaml" in str(info.value)


def test_no_costs_section_means_no_costs(tmp_path):
    assert _settings(tmp_path, "windows: [1h]\n").costs is None
