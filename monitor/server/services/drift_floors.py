"""Per-model effect-size floors of the drift job: the ``drift_min_effect`` key of cvmon.yaml.

By default every detector the drift job fits calibrates its floor on the version's reference
(:mod:`detectors.floor`: mean + 3 sd of the effect sizes between pairs of ``drift_min_samples``
reference samples), and flags a window only when its test rejects and its effect size is above
the floor. A model can set its own floor per detector and feature, applied when windows are
scored (no refit needed)::

    drift_min_effect:
      digits:                     # the model
        pca_ks:embedding: 0.25    # a fixed floor: flag only KS statistics above 0.25
        chi_square:class_mix: 0   # the test alone decides
        psi:class_mix: auto       # calibrated on the reference (the default)
      "*":                        # every model without its own entry for the pair
        ks:confidence: 0.1

:func:`monitor.server.settings.parse_min_effect` validates it when the settings load.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

EVERY_MODEL: Final = "*"


def floors_for(config: Mapping[str, Mapping[str, float | None]], model: str) -> dict[str, float | None]:
    """The floors of one model, detector:feature -> floor (None: calibrated): its own entries
    over those of ``"*"``."""
    return {**config.get(EVERY_MODEL, {}), **config.get(model, {})}
