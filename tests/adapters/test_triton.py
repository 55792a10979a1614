"""The triton adapter through tritonclient.http against a KServe v2 server running the real
digits ONNX model (tests/adapters/kserve.py)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton_http

from monitor.adapters import Outputs, TritonAdapter
from tests.adapters.conftest import flat
from tests.adapters.kserve import KServeServer


@pytest.fixture
def kserve(digits):
    session = ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])
    with KServeServer("digits", session) as server:
        yield server


@pytest.fixture
def triton(kserve):
    client = triton_http.InferenceServerClient(kserve.url)
    yield client
    client.close()


def infer_input(x: np.ndarray, binary: bool) -> triton_http.InferInput:
    inp = triton_http.InferInput("X", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


@pytest.mark.parametrize("binary", [pytest.param(True, id="binary-tensors"), pytest.param(False, id="json-tensors")])
def test_infer_is_logged_and_the_result_returned(triton, kserve, digits, mon, sent, binary):
    assert triton.is_model_ready("digits")
    model = TritonAdapter(triton, "digits", mon, Outputs(probabilities="probabilities", embedding="hidden"))
    x = flat(digits.images[:6])
    # The caller wants labels only; the adapter adds the outputs it logs to the request.
    result = model.infer([infer_input(x, binary)], [triton_http.InferRequestedOutput("label", binary_data=binary)],
                         cohort={"camera": "cam-2"}, prediction_ids=[f"r{i}" for i in range(6)])  # fmt: skip
    session = ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])
    labels, probs, hidden = session.run(None, {"X": x})
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    assert mon.flush(10)
    assert kserve.requests == 1
    for i in range(6):
        rec = sent.records[f"r{i}"]
        np.testing.assert_allclose(rec["probabilities"], probs[i], rtol=1e-6)
        np.testing.assert_allclose(rec["embedding"], hidden[i], rtol=1e-6)
        assert rec["cohort"] == {"camera": "cam-2"} and rec["latency_ms"] > 0


def test_infer_without_named_outputs_returns_everything(triton, digits, mon, sent):
    model = TritonAdapter(triton, "digits", mon, Outputs(probabilities="probabilities"))
    result = model.infer([infer_input(flat(digits.images[:2]), True)])
    assert result.as_numpy("probabilities").shape == (2, 10)
    assert mon.flush(10) and len(sent.records) == 2
