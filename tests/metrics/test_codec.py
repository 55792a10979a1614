"""Exact sums as stored words: three little-endian 64-bit words a sum, read back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.metrics._codec import fixed_from_words, fixed_to_words


def test_sums_round_trip_through_three_words_each():
    rng = np.random.default_rng(3)
    values = [0, 1, (1 << 64) - 1, 1 << 64, (1 << 192) - 1]
    values += [int(x) << int(s) for x, s in zip(rng.integers(0, 1 << 62, size=200), rng.integers(0, 130, size=200), strict=True)]
    sums = np.array(values, dtype=object).reshape(-1, 5)
    words = fixed_to_words(sums)
    assert words.dtype == np.uint64 and words.shape == (*sums.shape, 3)
    flat = words.reshape(-1, 3)
    for v, (w0, w1, w2) in zip(values, flat.tolist(), strict=True):
        assert (w0, w1, w2) == (v & (1 << 64) - 1, (v >> 64) & (1 << 64) - 1, v >> 128)
    assert (fixed_from_words(words) == sums).all()
    assert fixed_to_words(np.zeros(0, dtype=object)).shape == (0, 3)


@pytest.mark.parametrize("value", [-1, 1 << 192])
def test_a_sum_out_of_range_is_refused(value):
    with pytest.raises(OverflowError):
        fixed_to_words(np.array([0, value], dtype=object))
