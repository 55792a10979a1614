"""The demo's cameras: a stream of digit images per camera, one of which drifts midway, with
ground truth for a share of the traffic arriving after a delay.

Time is compressed: ``simulated_hours`` of traffic are played in ``duration`` seconds, and every
record carries the simulated time as its timestamp (ending at "now"), so cvmon's hourly metric
windows fill up during a two-minute demo. Ground truth is sent in real time after a delay that
is the same share of the run as a 15–90 minute labelling delay is of the simulated hours, with
a ``labelled at`` timestamp on the simulated clock.
"""

from __future__ import annotations

import heapq
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from monitor.server.demo.model import PIXEL_MAX, Digits, drift


@dataclass(frozen=True)
class Schedule:
    duration: float  # real seconds
    simulated_hours: float
    start_unix: float  # simulated time at the start of the run

    def simulated(self, elapsed: float) -> float:
        return self.start_unix + elapsed / self.duration * self.simulated_hours * 3600.0

    def real_delay(self, simulated_seconds: float) -> float:
        return simulated_seconds / (self.simulated_hours * 3600.0) * self.duration


@dataclass(frozen=True)
class Camera:
    name: str
    gain: float  # a camera's exposure: small differences between healthy cameras
    drifts: bool = False


CAMERAS = (Camera("cam-1", 1.0), Camera("cam-2", 0.92), Camera("cam-3", 1.05, drifts=True), Camera("cam-4", 0.97))


def severity(progress: float, *, start: float = 0.5, ramp: float = 0.1) -> float:
    """The drifting camera's condition: fine until ``start`` of the run, fully degraded ``ramp`` later."""
    return float(np.clip((progress - start) / ramp, 0.0, 1.0))


def frames(digits: Digits, camera: Camera, n: int, progress: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images as ``camera`` sees them at ``progress`` (0..1) of the run, and their labels."""
    idx = rng.integers(0, len(digits.images), size=n)
    images = np.clip(digits.images[idx] * camera.gain + rng.normal(0.0, 0.4, (n, 8, 8)), 0.0, PIXEL_MAX)
    if camera.drifts:
        images = drift(images, severity(progress), rng)
    return images.astype(np.float32), digits.labels[idx]


def labelled(prediction_id: str, share: float) -> bool:
    """Whether a prediction gets ground truth: a deterministic ``share`` of them."""
    return zlib.crc32(prediction_id.encode()) % 1000 < share * 1000


@dataclass(order=True)
class _Due:
    at: float
    prediction_id: str = field(compare=False)
    label: str = field(compare=False)
    labelled_at: float = field(compare=False)


class Labeller:
    """Ground truth waiting for its (real-time) delay; ``send`` is called when it is due."""

    def __init__(self, schedule: Schedule, share: float, send: Callable[[str, str, float], None], rng: np.random.Generator) -> None:
        self._schedule = schedule
        self._share = share
        self._send = send
        self._rng = rng
        self._heap: list[_Due] = []
        self.sent = 0

    def predicted(self, prediction_id: str, label: str, now: float, simulated_ts: float) -> None:
        if labelled(prediction_id, self._share):
            delay = float(self._rng.uniform(15 * 60, 90 * 60))
            heapq.heappush(self._heap, _Due(now + self._schedule.real_delay(delay), prediction_id, label, simulated_ts + delay))

    def release(self, now: float) -> None:
        """Send what is due by ``now`` (``float('inf')``: everything)."""
        while self._heap and self._heap[0].at <= now:
            due = heapq.heappop(self._heap)
            self._send(due.prediction_id, due.label, due.labelled_at)
            self.sent += 1
