"""Runtimes load only when an adapter is used; a missing one names the pip command."""

from __future__ import annotations

import sys

import pytest

from monitor.errors import MissingExtra


def test_importing_the_adapters_loads_no_runtime():
    from tests.test_imports import imported_by

    loaded = {m.split(".")[0] for m in imported_by("monitor.adapters")}
    assert not loaded & {"onnxruntime", "torch", "tritonclient", "gevent", "sklearn", "fastapi"}


@pytest.mark.parametrize(
    ("runtime", "make", "extra"),
    [
        pytest.param("onnxruntime", lambda m, mon: m.OnnxAdapter("x.onnx", mon, m.Outputs(probabilities="p")), "onnx", id="onnx"),
        pytest.param("torch", lambda m, mon: m.TorchAdapter(object(), mon), "torch", id="torch"),
        pytest.param(
            "tritonclient.http",
            lambda m, mon: m.TritonAdapter(object(), "x", mon, m.Outputs(probabilities="p")),
            "triton",
            id="triton",
        ),
    ],
)
def test_a_missing_runtime_raises_with_the_install_command(monkeypatch, mon, runtime, make, extra):
    import monitor.adapters

    monkeypatch.setitem(sys.modules, runtime, None)  # makes `import runtime` fail
    with pytest.raises(MissingExtra, match=rf"pip install 'cvmon\[{extra}\]'"):
        make(monitor.adapters, mon)
