"""PyTorch (GPU): an ``nn.Module`` whose calls also log to cvmon.

Latency on a GPU: CUDA kernels run asynchronously, so timing ``module(x)`` alone measures the
launch, not the work. When the module's parameters are on a CUDA device the adapter calls
``torch.cuda.synchronize`` before starting the clock (so earlier queued work is not billed to
this call) and after the forward pass (so all of its work is). That path runs only on a machine
with a GPU; on CPU the forward pass is synchronous and timed directly.

Each prediction carries the call's resources: batch size, the process's CPU time over the call,
and the device (``cpu``, or the GPU's name with its utilisation and memory through NVML,
``cvmon[gpu]``; see :mod:`monitor.adapters._resources`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np

from monitor.adapters._outputs import Cohort, Outputs, _Warn, log_outputs
from monitor.adapters._resources import GpuProbe, UsageMeter
from monitor.errors import require
from monitor.sdk import Client


class TorchAdapter:
    """Wrap a module; calling the adapter calls the module and returns its output unchanged.

    ::

        model = TorchAdapter(net.eval().cuda(), mon, output="logits", embedding_layer="avgpool")
        with torch.inference_mode():
            logits = model(images, cohort={"camera": "cam-3"})

    ``output``: what a classifier returns, ``"logits"`` or ``"probabilities"`` (a tensor
    ``(N, classes)``). ``task="detection"`` expects torchvision's output, a list of dicts with
    ``boxes``, ``labels`` and ``scores`` per image. ``embedding_layer``: the name (as in
    ``module.named_modules()``) of a layer whose output, flattened per sample, is logged as the
    embedding; a forward hook captures it, per thread.
    """

    def __init__(
        self,
        module: Any,
        client: Client,
        *,
        task: Literal["classification", "detection"] = "classification",
        output: Literal["logits", "probabilities"] = "logits",
        embedding_layer: str | None = None,
    ) -> None:
        self._torch = require("torch", feature="the torch adapter", extra="torch")
        self.module = module
        self.client = client
        if task == "classification":
            if output not in ("logits", "probabilities"):
                raise ValueError("output must be 'logits' or 'probabilities'")
            self.outputs = Outputs(task, **{output: "output"}, embedding="embedding" if embedding_layer else None)
        else:
            self.outputs = Outputs(task, boxes="boxes", box_classes="labels", box_scores="scores",
                                   embedding="embedding" if embedding_layer else None)  # fmt: skip
        self._captured = threading.local()
        self._hook = None
        if embedding_layer is not None:
            layers = dict(module.named_modules())
            if embedding_layer not in layers:
                raise ValueError(f"no layer {embedding_layer!r}; the module has {sorted(n for n in layers if n)}")
            self._hook = layers[embedding_layer].register_forward_hook(self._capture)
        self._warn = _Warn()
        #: one meter per device the module has run on (it may be moved between calls)
        self._meters: dict[Any, UsageMeter] = {}

    def _meter(self, device: Any) -> UsageMeter:
        meter = self._meters.get(device)
        if meter is None:
            if device is None:
                meter = UsageMeter("cpu")
            else:  # GPU only
                index = device.index if device.index is not None else self._torch.cuda.current_device()
                uuid = getattr(self._torch.cuda.get_device_properties(index), "uuid", None)
                meter = UsageMeter(self._torch.cuda.get_device_name(index), GpuProbe(index, uuid=str(uuid) if uuid else None))
            self._meters[device] = meter
        return meter

    def _capture(self, _module: Any, _inputs: Any, output: Any) -> None:
        self._captured.embedding = output.detach()

    def _cuda_device(self) -> Any:
        param = next(self.module.parameters(), None)
        return param.device if param is not None and param.device.type == "cuda" else None

    def __call__(
        self,
        *args: Any,
        cohort: Cohort | Sequence[Cohort] | None = None,
        prediction_ids: Sequence[str] | None = None,
        timestamp: float | datetime | None = None,
        **kwargs: Any,
    ) -> Any:
        device = self._cuda_device()
        meter = self._meter(device)
        if device is not None:  # GPU only (see the module docstring)
            self._torch.cuda.synchronize(device)
        cpu = meter.start()
        start = time.perf_counter()
        out = self.module(*args, **kwargs)
        if device is not None:
            self._torch.cuda.synchronize(device)
        latency_ms = (time.perf_counter() - start) * 1000.0
        usage = meter.stop(cpu)
        embedding = self._captured.__dict__.pop("embedding", None)
        named: dict[str, Any] = {"embedding": _numpy(embedding) if embedding is not None else None}
        if self.outputs.task == "classification":
            named["output"] = _numpy(out)
        else:
            named.update(_detections(out))
        log_outputs(self.client, self.outputs, named, latency_ms=latency_ms, cohort=cohort,
                    prediction_ids=prediction_ids, timestamp=timestamp, warn=self._warn, usage=usage)  # fmt: skip
        return out

    def remove(self) -> None:
        """Remove the embedding hook from the module."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None


def _numpy(tensor: Any) -> np.ndarray:
    return np.asarray(tensor.detach().float().cpu().numpy())


def _detections(out: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """torchvision's ragged per-image results as lists of arrays, image by image."""
    return {
        "boxes": [_numpy(d["boxes"]).reshape(-1, 4) for d in out],
        "labels": [d["labels"].detach().cpu().numpy().astype(np.int32) for d in out],
        "scores": [_numpy(d["scores"]) for d in out],
    }
