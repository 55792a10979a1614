"""Mergeable quantiles with a relative-error guarantee (for latencies).

Exact quantiles need every value; a week of inference latencies at 100 requests/s is 60 million
of them. A log-bucketed histogram (the DDSketch of Masson, Rim and Lee, 2019) answers any quantile
within a relative error ``alpha`` of the exact order statistic, in a state of a few hundred
buckets that adds up across hours. Written here rather than taken from the ``ddsketch`` package
because this is 60 lines and that package brings protobuf with it into every inference process.

The quantile reported for ``q`` is the sample of rank ``floor(q * (n - 1))`` (numpy's
``method="lower"``) to within ``alpha`` relative error; values at or below ``min_value`` (e.g.
zero latency) are counted exactly as ``0``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._codec import pack, readonly, unpack

_KIND: Final = "quantiles"
DEFAULT_ALPHA: Final = 0.01
_MIN_VALUE: Final = 1e-9


@dataclass(frozen=True, eq=False, slots=True)
class QuantileSketch:
    """Bucket counts of ``ceil(log_gamma(x))`` for values above ``min_value``; ``zeros`` below."""

    alpha: float
    keys: NDArray[np.int32]
    counts: NDArray[np.int64]
    zeros: int

    @property
    def n(self) -> int:
        return int(self.counts.sum()) + self.zeros

    @property
    def gamma(self) -> float:
        return (1 + self.alpha) / (1 - self.alpha)

    @classmethod
    def empty(cls, alpha: float = DEFAULT_ALPHA) -> QuantileSketch:
        return cls(alpha, readonly(np.zeros(0, np.int32)), readonly(np.zeros(0, np.int64)), 0)

    @classmethod
    def of(cls, values: ArrayLike, alpha: float = DEFAULT_ALPHA) -> QuantileSketch:
        """The sketch of non-negative finite values (NaN, e.g. a missing latency, is ignored)."""
        x = np.asarray(values, dtype=np.float64).ravel()
        x = x[~np.isnan(x)]
        if x.size and (x.min() < 0 or not np.isfinite(x).all()):
            raise ValueError("quantile sketches take finite non-negative values")
        positive = x[x > _MIN_VALUE]
        gamma = (1 + alpha) / (1 - alpha)
        keys, counts = np.unique(np.ceil(np.log(positive) / math.log(gamma)).astype(np.int32), return_counts=True)
        return cls(alpha, readonly(keys), readonly(counts.astype(np.int64)), int(x.size - positive.size))

    @classmethod
    def merge(cls, *sketches: QuantileSketch) -> QuantileSketch:
        if not sketches:
            raise ValueError("merge needs at least one sketch")
        alpha = sketches[0].alpha
        if any(s.alpha != alpha for s in sketches):
            raise ValueError("cannot merge sketches of different accuracy")
        zeros = sum(s.zeros for s in sketches)
        present = [s for s in sketches if s.keys.size]
        if not present:
            return replace(cls.empty(alpha), zeros=zeros)
        if len(present) == 1:
            return present[0] if present[0].zeros == zeros else replace(present[0], zeros=zeros)
        # a sketch's buckets are unique (of and merge make them so) and all lie within a few
        # thousand keys (1e-9 to 1e9 at 1 %): add the counts in a dense range of keys rather than
        # sorting all of them (np.unique and np.add.at cost three times as much)
        lo = min(int(s.keys.min()) for s in present)
        dense = np.zeros(max(int(s.keys.max()) for s in present) - lo + 1, np.int64)
        for s in present:
            dense[s.keys - lo] += s.counts
        keys = np.flatnonzero(dense)
        return cls(alpha, readonly((keys + lo).astype(np.int32)), readonly(dense[keys]), zeros)

    def quantile(self, q: float) -> float | None:
        """The value at rank ``floor(q * (n - 1))`` within relative error ``alpha``; None when empty."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """:meth:`quantile` of each of ``qs``, counting the buckets once."""
        if not all(0 <= q <= 1 for q in qs):
            raise ValueError("q must lie in [0, 1]")
        n = self.n
        if n == 0:
            return [None] * len(qs)
        cumulative = np.cumsum(self.counts)
        gamma = self.gamma
        out: list[float | None] = []
        for q in qs:
            rank = math.floor(q * (n - 1))
            if rank < self.zeros:
                out.append(0.0)
                continue
            idx = int(np.searchsorted(cumulative, rank - self.zeros, side="right"))
            # the midpoint (in relative terms) of bucket (gamma^(k-1), gamma^k]
            out.append(float(2 * gamma ** int(self.keys[idx]) / (gamma + 1)))
        return out

    def to_bytes(self) -> bytes:
        return pack(_KIND, {"alpha": self.alpha, "zeros": self.zeros}, {"keys": self.keys, "counts": self.counts})

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileSketch:
        meta, arrays = unpack(data, _KIND)
        return cls(float(meta["alpha"]), readonly(arrays["keys"]), readonly(arrays["counts"]), int(meta["zeros"]))
