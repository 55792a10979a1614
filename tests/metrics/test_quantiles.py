"""The latency sketch: merges are exact (the sketch of the union), quantiles within alpha."""

from __future__ import annotations

import numpy as np
import pytest

from monitor.metrics._quantiles import QuantileSketch


def same(a: QuantileSketch, b: QuantileSketch) -> bool:
    return (
        a.alpha == b.alpha and a.zeros == b.zeros and a.keys.dtype == b.keys.dtype == np.int32
        and np.array_equal(a.keys, b.keys) and np.array_equal(a.counts, b.counts)
    )  # fmt: skip


@pytest.mark.parametrize("seed", range(5))
def test_a_merge_is_the_sketch_of_the_union_in_any_order(seed):
    rng = np.random.default_rng(seed)
    parts = [rng.gamma(2.0, 6.0, size=int(rng.integers(0, 3000))) for _ in range(int(rng.integers(2, 30)))]
    parts[0][:5] = 0.0  # exact zeros are counted apart
    parts.append(np.array([]))  # an empty part is the identity
    parts.append(rng.uniform(1e-6, 1e6, size=50))  # far apart buckets
    whole = QuantileSketch.of(np.concatenate(parts))
    sketches = [QuantileSketch.of(p) for p in parts]
    assert same(QuantileSketch.merge(*sketches), whole)
    order = rng.permutation(len(sketches))
    halves = QuantileSketch.merge(*(sketches[i] for i in order[:3])), QuantileSketch.merge(*(sketches[i] for i in order[3:]))
    assert same(QuantileSketch.merge(*halves), whole)
    assert same(QuantileSketch.merge(QuantileSketch.empty(), sketches[1]), sketches[1])
    assert same(QuantileSketch.from_bytes(whole.to_bytes()), whole)


@pytest.mark.parametrize("q", [0.0, 0.5, 0.95, 0.99, 1.0])
def test_quantiles_are_within_alpha_of_the_exact_order_statistic(q):
    values = np.random.default_rng(7).lognormal(2.0, 1.5, size=20_000)
    sketch = QuantileSketch.merge(*(QuantileSketch.of(part) for part in np.array_split(values, 9)))
    exact = np.quantile(values, q, method="lower")
    assert abs(sketch.quantile(q) - exact) <= sketch.alpha * exact
    assert QuantileSketch.empty().quantile(q) is None
