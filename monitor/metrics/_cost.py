"""Cost per inference from latencies, batch sizes and devices, priced per device-hour.

An inference call of batch size ``b`` on device ``d`` that took ``L`` milliseconds is logged as
``b`` predictions, each carrying the call's latency and ``resources.batch_size = b``. The call
held the device for ``L`` ms and was one request, so each of its predictions stands for

* ``L / 1000 / b`` device-seconds, and
* ``1 / b`` request (an inference call; with ``batch_size`` 1 a request is a prediction).

With ``P_d`` the price of a device-hour of ``d``'s class and ``F`` the fixed price of 1 000
requests (both in the configured currency)::

    cost_i        = P_d · (L_i / 1000 / b_i) / 3600  +  F · (1 / b_i) / 1000
    cost_per_1k   = 1000 · Σ_i cost_i / N

over the ``N`` predictions that have a latency and a priced device. A prediction without
``batch_size`` counts as a batch of 1; one without a latency, or whose device has no price, is
counted apart (``unmetered``, ``unpriced``) and left out of ``N``, so the figure never mixes in a
guess. Calls that overlap on one device are each billed their own latency: for a device serving
several calls at once the cost is an upper bound.

The state keeps, per (device, batch size), the predictions and their latencies summed in
integer nanoseconds (each latency rounded to the nanosecond), so states of hours merge exactly.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ._codec import pack, readonly, unpack

_KIND: Final = "cost"
_I64 = np.int64
_NS_PER_MS: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class CostPrices:
    """What a device-hour costs per device class, and a fixed cost per 1 000 requests.

    ``device_hour`` pairs a device class pattern (the device name as the adapters report it:
    ``cpu``, ``NVIDIA A100-SXM4-80GB``; ``*`` and ``?`` match any text, case-sensitively) with
    its price; the first pattern that matches a device prices it. ``default_device`` is the
    device of predictions that report none (None: those stay unpriced).
    """

    device_hour: tuple[tuple[str, float], ...]
    per_1k_requests: float = 0.0
    currency: str = "USD"
    default_device: str | None = None

    def __post_init__(self) -> None:
        for pattern, price in self.device_hour:
            if not pattern or not math.isfinite(price) or price < 0:
                raise ValueError(f"device_hour: {pattern!r} needs a finite price >= 0, got {price!r}")
        if not math.isfinite(self.per_1k_requests) or self.per_1k_requests < 0:
            raise ValueError(f"per_1k_requests must be a finite number >= 0, got {self.per_1k_requests!r}")

    def price_of(self, device: str) -> float | None:
        """The price of a device-hour of ``device`` ("" for none reported), or None."""
        if not device:
            if self.default_device is None:
                return None
            device = self.default_device
        for pattern, price in self.device_hour:
            if fnmatch.fnmatchcase(device, pattern):
                return price
        return None


@dataclass(frozen=True, eq=False, slots=True)
class CostState:
    """Mergeable usage of one window: per (device, batch size), predictions and latency.

    ``devices`` are the device names, sorted ("" for predictions that reported none); ``device``
    indexes it. ``batch_size`` 0 means not reported (billed as 1). ``unmetered`` counts the
    predictions without a latency.
    """

    devices: tuple[str, ...]
    device: NDArray[np.int64]
    batch_size: NDArray[np.int64]
    predictions: NDArray[np.int64]
    latency_ns: NDArray[np.int64]
    unmetered: int

    @classmethod
    def empty(cls) -> CostState:
        z = readonly(np.zeros(0, dtype=_I64))
        return cls((), z, z, z, z, 0)

    @classmethod
    def merge(cls, *states: CostState) -> CostState:
        """The state of the union of the windows (exact, associative and commutative)."""
        if not states:
            raise ValueError("merge needs at least one state")
        names = tuple(sorted(set().union(*(s.devices for s in states))))
        index = {name: i for i, name in enumerate(names)}
        device = np.concatenate([np.array([index[d] for d in s.devices], dtype=_I64)[s.device] for s in states])
        return _summed(
            names,
            device,
            np.concatenate([s.batch_size for s in states]),
            np.concatenate([s.predictions for s in states]),
            np.concatenate([s.latency_ns for s in states]),
            sum(s.unmetered for s in states),
        )

    def to_bytes(self) -> bytes:
        arrays = {"device": self.device, "batch_size": self.batch_size, "predictions": self.predictions,
                  "latency_ns": self.latency_ns}  # fmt: skip
        return pack(_KIND, {"devices": list(self.devices), "unmetered": self.unmetered}, arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> CostState:
        meta, arrays = unpack(data, _KIND, required=("device", "batch_size", "predictions", "latency_ns"))
        devices = meta.get("devices")
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise ValueError("cost state has no device list")
        return cls(tuple(devices), arrays["device"], arrays["batch_size"], arrays["predictions"],
                   arrays["latency_ns"], int(meta["unmetered"]))  # fmt: skip


@dataclass(frozen=True, slots=True)
class DeviceCost:
    """One device of a window: its share of the usage, and what it cost (None: no price)."""

    device: str
    predictions: int
    device_seconds: float
    requests: float
    price_per_hour: float | None
    cost: float | None


@dataclass(frozen=True, slots=True)
class CostMetrics:
    """What :func:`cost_metrics` derives from a state; costs in the prices' currency."""

    currency: str
    #: every prediction of the window, metered or not
    predictions: int
    #: predictions with a latency and a priced device: the ``N`` of ``cost_per_1k``
    costed: int
    unmetered: int
    unpriced: int
    #: over the costed predictions
    device_seconds: float
    requests: float
    cost: float
    cost_per_1k: float | None
    per_device: tuple[DeviceCost, ...]


def cost_state(
    latency_ms: ArrayLike,
    *,
    devices: Sequence[str | None] | None = None,
    batch_sizes: ArrayLike | None = None,
) -> CostState:
    """Count a window's predictions: their latencies (NaN: not reported), devices (None or "":
    not reported) and batch sizes (0 or negative: not reported)."""
    latency = np.asarray(latency_ms, dtype=np.float64).reshape(-1)
    n = latency.size
    names_in = [""] * n if devices is None else ["" if d is None else str(d) for d in devices]
    if len(names_in) != n:
        raise ValueError(f"devices has {len(names_in)} values for {n} latencies")
    batch = np.zeros(n, dtype=_I64) if batch_sizes is None else np.asarray(batch_sizes, dtype=np.float64).reshape(-1)
    if batch.shape != (n,):
        raise ValueError(f"batch_sizes has {batch.size} values for {n} latencies")
    batch = np.where(np.isfinite(batch) & (batch > 0), batch, 0).astype(_I64)
    if np.isinf(latency).any() or (latency < 0).any():
        raise ValueError("latencies must be finite and >= 0 (NaN: not reported)")
    metered = ~np.isnan(latency)
    names: list[str] = sorted(set(names_in))
    index = {name: i for i, name in enumerate(names)}
    device = np.array([index[d] for d in names_in], dtype=_I64)
    ns = np.rint(latency[metered] * _NS_PER_MS).astype(_I64)
    return _summed(
        tuple(names),
        device[metered],
        batch[metered],
        np.ones(int(metered.sum()), dtype=_I64),
        ns,
        int(n - metered.sum()),
    )


def cost_metrics(state: CostState, prices: CostPrices) -> CostMetrics:
    """Device-seconds, requests and cost per 1 000 inferences (the module's formula)."""
    seconds: dict[int, Fraction] = {}
    requests: dict[int, Fraction] = {}
    count: dict[int, int] = {}
    for d, b, n, ns in zip(state.device.tolist(), state.batch_size.tolist(), state.predictions.tolist(),
                           state.latency_ns.tolist(), strict=True):  # fmt: skip
        size = max(b, 1)
        seconds[d] = seconds.get(d, Fraction(0)) + Fraction(ns, 1_000_000_000 * size)
        requests[d] = requests.get(d, Fraction(0)) + Fraction(n, size)
        count[d] = count.get(d, 0) + n
    per_device = []
    total = Fraction(0)
    costed = unpriced = 0
    used_seconds = used_requests = Fraction(0)
    fixed = Fraction(prices.per_1k_requests) / 1000
    for d in sorted(count, key=lambda i: state.devices[i]):
        price = prices.price_of(state.devices[d])
        cost = None
        if price is None:
            unpriced += count[d]
        else:
            value = Fraction(price) * seconds[d] / 3600 + fixed * requests[d]
            total += value
            cost = float(value)
            costed += count[d]
            used_seconds += seconds[d]
            used_requests += requests[d]
        per_device.append(DeviceCost(state.devices[d], count[d], float(seconds[d]), float(requests[d]), price, cost))
    return CostMetrics(
        currency=prices.currency,
        predictions=sum(count.values()) + state.unmetered,
        costed=costed,
        unmetered=state.unmetered,
        unpriced=unpriced,
        device_seconds=float(used_seconds),
        requests=float(used_requests),
        cost=float(total),
        cost_per_1k=float(total * 1000 / costed) if costed else None,
        per_device=tuple(per_device),
    )


def _summed(
    devices: tuple[str, ...],
    device: NDArray[Any],
    batch: NDArray[Any],
    predictions: NDArray[Any],
    latency_ns: NDArray[Any],
    unmetered: int,
) -> CostState:
    """Rows with the same (device, batch size) added up; sorted; devices no row uses dropped."""
    keys = np.stack([device, batch]).astype(_I64)
    if keys.shape[1]:
        unique, inverse = np.unique(keys, axis=1, return_inverse=True)
        inverse = inverse.reshape(-1)
    else:
        unique, inverse = keys, np.zeros(0, dtype=_I64)
    sums = np.zeros((2, unique.shape[1]), dtype=_I64)
    np.add.at(sums[0], inverse, np.asarray(predictions, dtype=_I64))
    np.add.at(sums[1], inverse, np.asarray(latency_ns, dtype=_I64))
    used = np.unique(unique[0])
    remap = np.full(len(devices), -1, dtype=_I64)
    remap[used] = np.arange(used.size)
    return CostState(
        tuple(devices[i] for i in used.tolist()),
        readonly(remap[unique[0]] if unique.shape[1] else unique[0].copy()),
        readonly(unique[1].copy()),
        readonly(sums[0]),
        readonly(sums[1]),
        unmetered,
    )
