"""Windows merged from whole days (shared between windows) equal windows merged hour by hour."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from monitor.metrics import classification_state
from monitor.metrics._quantiles import QuantileSketch
from monitor.server.services.evaluation import WindowStates as _WindowStates
from monitor.server.services.states import SliceKey, SliceState, merge_slices
from monitor.server.services.windows import HOUR, WindowSpan

START = datetime(2026, 11, 9, 0, tzinfo=UTC)  # a Monday


def hour_state(rng: np.random.Generator) -> SliceState:
    n = int(rng.integers(1, 30))
    labels = rng.integers(4, size=n)
    return SliceState(
        predictions=n, errors=0, labelled=n, calibration=None, detection=None,
        classification=classification_state(labels, predictions=rng.integers(4, size=n), num_classes=4),
        latency=QuantileSketch.of(rng.gamma(2.0, 6.0, size=n)), label_latency=QuantileSketch.empty(),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("start_hours", "length_hours"),
    [(0, 24), (24, 24), (0, 168), (13, 168), (13, 24), (5, 3), (167, 2), (30, 72)],
)
def test_day_merges_equal_hour_merges(start_hours, length_hours):
    rng = np.random.default_rng(start_hours * 1000 + length_hours)
    keys = [SliceKey("v1", "", ""), SliceKey("v1", "camera", "a"), SliceKey("v2", "", "")]
    # ten days of hours, some missing, some slices missing in some hours
    hours = {
        START + h * HOUR: {k: hour_state(rng) for k in keys if rng.random() < 0.8}
        for h in range(240)
        if rng.random() < 0.9
    }
    windows = _WindowStates(hours)
    span = WindowSpan("w", START + start_hours * HOUR, START + (start_hours + length_hours) * HOUR)
    got = windows.of(span)
    want = merge_slices(s for h, s in hours.items() if span.start <= h < span.end)
    assert got.keys() == want.keys()
    for key in want:
        a, b = got[key], want[key]
        assert (a.predictions, a.labelled) == (b.predictions, b.labelled)
        assert np.array_equal(a.classification.confusion_matrix(), b.classification.confusion_matrix())
        assert np.array_equal(a.latency.keys, b.latency.keys) and np.array_equal(a.latency.counts, b.latency.counts)
    # a second window over the same days reuses the merged days
    assert windows.of(span).keys() == want.keys()
    if length_hours >= 24 and start_hours % 24 == 0:
        assert START + start_hours * HOUR in windows.days
