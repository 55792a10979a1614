"""onnxruntime (edge): an ``InferenceSession`` whose ``run`` also logs to cvmon."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from monitor.adapters._outputs import Cohort, Outputs, _Warn, log_outputs
from monitor.adapters._resources import GpuProbe, UsageMeter
from monitor.errors import require
from monitor.sdk import Client


class OnnxAdapter:
    """Wrap an onnxruntime session; :meth:`run` has the session's signature and result.

    ::

        session = onnxruntime.InferenceSession("digits.onnx", providers=["CPUExecutionProvider"])
        model = OnnxAdapter(session, mon, Outputs(probabilities="probabilities", embedding="hidden"))
        label, probs = model.run(["label", "probabilities"], {"X": batch}, cohort={"camera": "cam-3"})

    Outputs named in ``outputs`` are fetched even when the caller does not ask for them; the
    caller still gets exactly what it asked for. ``session`` may be a path to a ``.onnx`` file.

    Each prediction carries the call's resources: the batch size, the process's CPU time over
    the call, and the device of the session's first execution provider: ``cpu``; for CUDA and
    TensorRT the GPU's name, utilisation and memory through NVML (``cvmon[gpu]``); otherwise the
    provider's name (e.g. ``OpenVINOExecutionProvider``).
    """

    def __init__(
        self,
        session: Any,
        client: Client,
        outputs: Outputs,
        *,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        ort = require("onnxruntime", feature="the onnxruntime adapter", extra="onnx")
        if isinstance(session, (str, os.PathLike, bytes)):
            session = ort.InferenceSession(session, providers=list(providers))
        self.session = session
        self.client = client
        self.outputs = outputs
        self._all = [o.name for o in session.get_outputs()]
        missing = [n for n in outputs.names() if n not in self._all]
        if missing:
            raise ValueError(f"the model has no output {missing[0]!r}; its outputs are {self._all}")
        self._warn = _Warn()
        self.meter = _meter(session)

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: Any = None,
        *,
        cohort: Cohort | Sequence[Cohort] | None = None,
        prediction_ids: Sequence[str] | None = None,
        timestamp: float | datetime | None = None,
    ) -> list[Any]:
        """``session.run(output_names, input_feed, run_options)``, timed and logged.
        ``timestamp`` (Unix seconds or an aware datetime) replaces "now", e.g. to replay recorded traffic."""
        wanted = list(output_names) if output_names else self._all
        fetch = wanted + [n for n in self.outputs.names() if n not in wanted]
        cpu = self.meter.start()
        start = time.perf_counter()
        results = self.session.run(fetch, input_feed, run_options)
        latency_ms = (time.perf_counter() - start) * 1000.0
        usage = self.meter.stop(cpu)
        named = dict(zip(fetch, results, strict=True))
        log_outputs(self.client, self.outputs, named, latency_ms=latency_ms, cohort=cohort,
                    prediction_ids=prediction_ids, timestamp=timestamp, warn=self._warn, usage=usage)  # fmt: skip
        return results[: len(wanted)]


_GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def _meter(session: Any) -> UsageMeter:
    """The meter of the session's first (preferred) execution provider."""
    providers = list(session.get_providers())
    first = providers[0] if providers else "CPUExecutionProvider"
    if first == "CPUExecutionProvider":
        return UsageMeter("cpu")
    if first in _GPU_PROVIDERS:
        try:
            index = int(session.get_provider_options().get(first, {}).get("device_id", 0))
        except (AttributeError, TypeError, ValueError):
            index = 0
        return UsageMeter("cuda", GpuProbe(index))
    return UsageMeter(first)
