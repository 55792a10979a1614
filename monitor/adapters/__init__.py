"""Reference inference adapters: run a model, log what it did through :class:`monitor.sdk.Client`,
return its outputs unchanged.

=====================  ===========================  ==========================================
adapter                wraps                        needs
=====================  ===========================  ==========================================
:class:`OnnxAdapter`   ``onnxruntime.InferenceSession`` (edge)   ``pip install 'cvmon[onnx]'``
:class:`TorchAdapter`  a ``torch.nn.Module`` (GPU)               ``pip install 'cvmon[torch]'``
:class:`TritonAdapter` ``tritonclient.http`` inference (KServe v2) ``pip install 'cvmon[triton]'``
=====================  ===========================  ==========================================

Each runtime is imported only when its adapter is used (``import monitor.adapters`` imports
none of them); a missing one raises :class:`monitor.errors.MissingExtra` with the pip command.

A batch of N inputs is logged as N predictions, each carrying the latency of the whole call
(what a request waited). Pass ``prediction_ids=`` (e.g. your image or request ids) to attach
ground truth later; otherwise the SDK makes ids. A model output the SDK refuses (NaN, logits
declared as probabilities) is logged as a warning and never breaks the inference call.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.adapters._onnx import OnnxAdapter
    from monitor.adapters._outputs import Outputs
    from monitor.adapters._torch import TorchAdapter
    from monitor.adapters._triton import TritonAdapter

__all__ = ["OnnxAdapter", "Outputs", "TorchAdapter", "TritonAdapter"]

_WHERE = {
    "OnnxAdapter": "monitor.adapters._onnx",
    "Outputs": "monitor.adapters._outputs",
    "TorchAdapter": "monitor.adapters._torch",
    "TritonAdapter": "monitor.adapters._triton",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'monitor.adapters' has no attribute {name!r}")
