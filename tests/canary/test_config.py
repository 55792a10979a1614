"""The canary: section of cvmon.yaml: defaults, per-model overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.errors import ConfigError
from monitor.server.rollout_config import DEFAULT_GATES, load_canary
from monitor.server.settings import Settings


def test_example_config_sets_per_model_gates():
    settings = Settings.load({"CVMON_CONFIG": str(Path(__file__).parents[2] / "examples" / "cvmon.yaml")})
    digits = settings.canary.policy("digits")
    assert digits.gates["recall:7"] == 0.03 and digits.gates["accuracy"] == 0.01
    assert settings.canary.policy("other").gates == DEFAULT_GATES


def test_overrides_inherit_the_defaults():
    config = load_canary({"alpha": 0.01, "gates": {"accuracy": 0.02}, "models": {"m": {"gates": {"confidence": None}}}})
    assert config.policy("m").alpha == 0.01
    assert config.policy("m").gates["accuracy"] == 0.02 and config.policy("m").gates["confidence"] is None
    assert config.policy("x").gates["confidence"] == 0.10


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param({"alpha": 0.9}, "alpha must be in", id="alpha"),
        pytest.param({"gates": {"acuracy": 0.01}}, "unknown metric 'acuracy'", id="metric"),
        pytest.param({"gates": {"accuracy": -0.01}}, "must be >= 0", id="negative"),
        pytest.param({"gates": {"precision": 0.01}}, "map class names", id="per-class"),
        pytest.param({"min_labels": 0}, "whole number >= 1", id="min-labels"),
        pytest.param({"window": "1h"}, "unknown key 'window'", id="key"),
        pytest.param({"models": {"m": {"models": {}}}}, "unknown key 'models'", id="nested"),
    ],
)
def test_bad_canary_settings_say_what_is_wrong(section, message):
    with pytest.raises(ConfigError, match=message):
        load_canary(section)
