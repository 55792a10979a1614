"""What an inference call used, for cost per inference: device, CPU time, and on NVIDIA GPUs the
utilisation and memory NVML reports.

CPU time is the serving process's (``time.process_time_ns``, every thread: runtimes such as
onnxruntime and torch compute on pools of their own threads) over the call. It is exact for a
process that serves one call at a time, the usual worker model; calls that overlap in one
process each count the other's CPU time too.

NVML (``pip install 'cvmon[gpu]'``, the ``nvidia-ml-py`` package) is imported only when a call
runs on a CUDA device. Its utilisation is an average over its own sample period (1/6 s to 1 s
depending on the GPU), so it is read at most every ``interval_s`` and reused in between; memory
is the device's used memory. Without NVML, or when it fails, the GPU fields are left out (with
one warning): logging never breaks inference.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from monitor.wire import Resources

log = logging.getLogger("monitor.adapters")


@dataclass(frozen=True, slots=True)
class CallUsage:
    """One call's usage; :meth:`resources` adds the batch size once the outputs are counted."""

    device: str | None
    cpu_time_ms: float | None
    gpu_utilization_ratio: float | None = None
    gpu_memory_bytes: int | None = None

    def resources(self, batch_size: int) -> Resources:
        return Resources(self.device, batch_size, self.cpu_time_ms, self.gpu_utilization_ratio, self.gpu_memory_bytes)


class GpuProbe:
    """NVML readings of one CUDA device, by its CUDA index (as the process sees it, after
    ``CUDA_VISIBLE_DEVICES``) or its UUID. ``nvml``: the ``pynvml`` module (imported when None)."""

    def __init__(
        self,
        cuda_index: int,
        *,
        uuid: str | None = None,
        interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
        nvml: Any = None,
        environ: dict[str, str] | None = None,
    ) -> None:
        self._interval = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: tuple[float, float, int] | None = None
        self.name: str | None = None
        self.problem: str | None = None
        self._nvml = nvml
        self._handle: Any = None
        try:
            if self._nvml is None:
                import pynvml

                self._nvml = pynvml
            self._nvml.nvmlInit()
            self._handle = _handle(self._nvml, cuda_index, uuid, os.environ if environ is None else environ)
            name = self._nvml.nvmlDeviceGetName(self._handle)
            self.name = name.decode() if isinstance(name, bytes) else str(name)
        except ImportError:
            self.problem = "nvidia-ml-py is not installed (pip install 'cvmon[gpu]')"
        except Exception as exc:  # NVMLError and its many subclasses, a bad index, a driver mismatch
            self.problem = f"NVML: {exc}"
            self._handle = None

    def sample(self) -> tuple[float | None, int | None]:
        """(utilisation 0..1, used memory in bytes), or (None, None) without NVML."""
        if self._handle is None:
            return None, None
        now = self._clock()
        with self._lock:
            last = self._last
            if last is not None and now - last[0] < self._interval:
                return last[1], last[2]
            try:
                util = self._nvml.nvmlDeviceGetUtilizationRates(self._handle).gpu / 100.0
                used = int(self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used)
            except Exception as exc:
                self.problem = f"NVML: {exc}"
                self._handle = None
                return None, None
            self._last = (now, min(max(util, 0.0), 1.0), used)
            return self._last[1], self._last[2]


def _handle(nvml: Any, cuda_index: int, uuid: str | None, environ: dict[str, str] | os._Environ[str]) -> Any:
    """The NVML handle of CUDA device ``cuda_index``: NVML numbers every GPU of the machine, CUDA
    only the visible ones, in ``CUDA_VISIBLE_DEVICES`` order (indices or UUIDs)."""
    if uuid:
        return nvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith(("GPU-", "MIG-")) else f"GPU-{uuid}")
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    if visible:
        entries = [e.strip() for e in visible.split(",") if e.strip()]
        if cuda_index >= len(entries):
            raise ValueError(f"CUDA device {cuda_index} is not in CUDA_VISIBLE_DEVICES={visible}")
        entry = entries[cuda_index]
        if entry.isdigit():
            return nvml.nvmlDeviceGetHandleByIndex(int(entry))
        return nvml.nvmlDeviceGetHandleByUUID(entry)
    return nvml.nvmlDeviceGetHandleByIndex(cuda_index)


class UsageMeter:
    """Measures calls on one device: ``started = meter.start()`` before, ``meter.stop(started)``
    after. ``device``: ``"cpu"``, a GPU's name, or None (unknown); ``gpu``: a :class:`GpuProbe`
    for a CUDA device (its NVML name replaces ``device`` when it has one)."""

    def __init__(self, device: str | None, gpu: GpuProbe | None = None, *, cpu_time: bool = True) -> None:
        self.gpu = gpu
        self.device = gpu.name if gpu is not None and gpu.name else device
        self._cpu_time = cpu_time
        if gpu is not None and gpu.problem:
            log.warning("cvmon adapter: GPU utilisation and memory are not logged: %s", gpu.problem)

    def start(self) -> int:
        return time.process_time_ns() if self._cpu_time else 0

    def stop(self, started: int) -> CallUsage:
        cpu_ms = (time.process_time_ns() - started) / 1e6 if self._cpu_time else None
        if self.gpu is None:
            return CallUsage(self.device, cpu_ms)
        util, memory = self.gpu.sample()
        return CallUsage(self.device, cpu_ms, util, memory)
