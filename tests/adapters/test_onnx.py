"""The onnxruntime adapter with real ONNX models: the digits MLP exported by skl2onnx (with its
hidden layer as an output) and a small detection graph built with onnx.helper."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from monitor.adapters import OnnxAdapter, Outputs
from tests.adapters.conftest import flat


@pytest.fixture(scope="module")
def session(digits):
    return ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])


def test_classifier_outputs_are_returned_unchanged_and_logged_with_embeddings(session, digits, mon, sent):
    model = OnnxAdapter(session, mon, Outputs(probabilities="probabilities", embedding="hidden"))
    x = flat(digits.images[:8])
    ids = [f"img-{i}" for i in range(8)]
    # The caller asks only for labels: the adapter fetches what it logs but returns only that.
    (labels,) = model.run(["label"], {"X": x}, cohort={"camera": "cam-1"}, prediction_ids=ids)
    expected_labels, probs, hidden = session.run(None, {"X": x})
    np.testing.assert_array_equal(labels, expected_labels)
    assert mon.flush(10)
    assert sorted(sent.records) == sorted(ids)
    for i, pid in enumerate(ids):
        rec = sent.records[pid]
        np.testing.assert_allclose(rec["probabilities"], probs[i], rtol=1e-6)
        np.testing.assert_allclose(rec["embedding"], hidden[i], rtol=1e-6)
        assert rec["cohort"] == {"camera": "cam-1"} and rec["latency_ms"] > 0
        assert rec["model"] == "digits" and rec["model_version"] == "v1"


def test_a_model_path_and_all_outputs(digits, mon, sent, tmp_path):
    path = tmp_path / "digits.onnx"
    path.write_bytes(digits.onnx)
    model = OnnxAdapter(str(path), mon, Outputs(probabilities="probabilities"))
    outputs = model.run(None, {"X": flat(digits.images[:3])})
    assert [o.shape for o in outputs] == [(3,), (3, 10), (3, 16)]
    assert mon.flush(10)
    assert len(sent.records) == 3 and all("embedding" not in r for r in sent.records.values())


def test_an_unknown_output_name_is_refused_at_construction(session, mon):
    with pytest.raises(ValueError, match="no output 'probs'"):
        OnnxAdapter(session, mon, Outputs(probabilities="probs"))


def test_bad_model_outputs_never_break_inference(session, digits, mon, sent, caplog):
    # Declaring softmax outputs as probabilities is right; declaring the hidden layer as such is
    # a mistake the SDK refuses: inference still returns, and the problem is logged.
    model = OnnxAdapter(session, mon, Outputs(probabilities="hidden"))
    (labels,) = model.run(["label"], {"X": flat(digits.images[:2])})
    assert labels.shape == (2,)
    assert "not logged" in caplog.text
    assert mon.flush(10) and sent.records == {}


def detector_session() -> ort.InferenceSession:
    """Boxes in, boxes out: scores from the box coordinates, classes from their argmax."""
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Identity", ["X"], ["boxes"]),
        helper.make_node("ReduceMean", ["X"], ["mean"], axes=[1], keepdims=0),
        helper.make_node("Sigmoid", ["mean"], ["scores"]),
        helper.make_node("ArgMax", ["X"], ["classes"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes, "detector",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [None, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [None]),
         helper.make_tensor_value_info("classes", TensorProto.INT64, [None])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def test_detector_outputs_map_to_boxes_classes_and_scores(mon, sent):
    session = detector_session()
    model = OnnxAdapter(session, mon, Outputs("detection", boxes="boxes", box_classes="classes", box_scores="scores"))
    x = np.array([[0, 0, 1, 3], [1, 2, 4, 3], [0, 0, 0, 0]], dtype=np.float32)
    boxes, scores, _classes = model.run(None, {"X": x}, prediction_ids=["frame-1"])
    np.testing.assert_array_equal(boxes, x)
    assert mon.flush(10)
    rec = sent.records["frame-1"]
    np.testing.assert_array_equal(rec["boxes"], x.reshape(-1))
    np.testing.assert_array_equal(rec["box_classes"], [3, 2, 0])
    np.testing.assert_allclose(rec["box_scores"], scores, rtol=1e-6)
