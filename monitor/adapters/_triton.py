"""Triton Inference Server (GPU serving): ``tritonclient.http`` inference calls (KServe v2
protocol), logged to cvmon. The latency is the client-side round trip, what the caller waited."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from monitor.adapters._outputs import Cohort, Outputs, _Warn, log_outputs
from monitor.adapters._resources import UsageMeter
from monitor.errors import require
from monitor.sdk import Client


class TritonAdapter:
    """Wrap ``tritonclient.http.InferenceServerClient.infer`` for one model.

    ::

        triton = tritonclient.http.InferenceServerClient("triton:8000")
        model = TritonAdapter(triton, "digits", mon, Outputs(probabilities="probabilities", embedding="hidden"))
        result = model.infer([inp], cohort={"camera": "cam-3"})
        probs = result.as_numpy("probabilities")

    When the caller names ``outputs``, the ones the adapter logs are requested too; the
    :class:`InferResult` is returned as the client produced it.

    Each prediction carries the batch size of its call and ``device``, what the Triton model
    instance runs on (e.g. ``"NVIDIA L4"``: the server's device, which a client cannot see; None
    leaves it out). No CPU time or GPU readings: the work happens in the server.
    """

    def __init__(
        self,
        triton: Any,
        model_name: str,
        client: Client,
        outputs: Outputs,
        *,
        model_version: str = "",
        device: str | None = None,
    ) -> None:
        self._http = require("tritonclient.http", feature="the triton adapter", extra="triton")
        self.triton = triton
        self.model_name = model_name
        self.model_version = model_version
        self.client = client
        self.outputs = outputs
        self._warn = _Warn()
        self.meter = UsageMeter(device, cpu_time=False)

    def infer(
        self,
        inputs: Sequence[Any],
        outputs: Sequence[Any] | None = None,
        *,
        cohort: Cohort | Sequence[Cohort] | None = None,
        prediction_ids: Sequence[str] | None = None,
        timestamp: float | datetime | None = None,
        **kwargs: Any,
    ) -> Any:
        """``triton.infer(model_name, inputs, model_version=..., outputs=..., **kwargs)``, timed and logged.
        ``timestamp`` (Unix seconds or an aware datetime) replaces "now", e.g. to replay recorded traffic."""
        requested = None
        if outputs is not None:
            have = {o.name() for o in outputs}
            extra = [self._http.InferRequestedOutput(n) for n in self.outputs.names() if n not in have]
            requested = [*outputs, *extra]
        start = time.perf_counter()
        result = self.triton.infer(self.model_name, list(inputs), model_version=self.model_version, outputs=requested, **kwargs)
        latency_ms = (time.perf_counter() - start) * 1000.0
        named = {name: result.as_numpy(name) for name in self.outputs.names()}
        log_outputs(self.client, self.outputs, named, latency_ms=latency_ms, cohort=cohort,
                    prediction_ids=prediction_ids, timestamp=timestamp, warn=self._warn, usage=self.meter.stop(0))  # fmt: skip
        return result
