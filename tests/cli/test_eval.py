"""cvmon eval coco / classification on small files, against the reference tools."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from monitor.server.cli._root import cli
from testkit.synth import CocoOptions, classification_like, coco_like
from tests.metrics._oracles import coco_per_class, coco_summary, pycocotools_eval, torchmetrics_ece

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        result = runner.invoke(cli, ["eval", *args], prog_name="cvmon", catch_exceptions=False)
        assert result.exit_code == code, result.output
        return result

    return invoke


@pytest.fixture
def coco_files(tmp_path):
    gt, dt = coco_like(21, CocoOptions(n_images=30, n_classes=6, crowd_rate=0.1, unused_classes=1))
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dt.json").write_text(json.dumps(dt))
    return tmp_path / "gt.json", tmp_path / "dt.json", pycocotools_eval(gt, dt)


def test_coco_json_has_the_twelve_names_and_per_class_ap(run, coco_files):
    gt, dt, oracle = coco_files
    out = json.loads(run("coco", "--gt", str(gt), "--dt", str(dt), "--json").stdout)
    for name, value in coco_summary(oracle).items():
        assert out[name] == pytest.approx(value, abs=1e-9), name
    for cat, (ap, ap50) in coco_per_class(oracle).items():
        entry = out["per_class"][str(cat)]
        assert (entry["ap"] is None) == (ap is None)
        if ap is not None:
            assert (entry["ap"], entry["ap50"]) == (
                pytest.approx(ap, abs=1e-9),
                pytest.approx(ap50, abs=1e-9),
            )


def test_coco_table_for_people(run, coco_files):
    gt, dt, oracle = coco_files
    out = run("coco", "--gt", str(gt), "--dt", str(dt)).stdout
    assert "AP @[IoU=0.50:0.95 | area=all    | maxDets=100]" in out
    assert f"{oracle.stats[0]:.4f}" in out
    assert "category" in out and "class-" in out


@pytest.mark.parametrize(
    ("gt_text", "dt_text", "message"),
    [
        pytest.param("{not json", "[]", "is not valid JSON", id="broken-json"),
        pytest.param('{"images": []}', "[]", "no 'annotations' list", id="not-coco"),
        pytest.param(
            '{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}',
            '[{"image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}]',
            "images the ground truth does not list", id="unknown-image",
        ),
        pytest.param(
            '{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}',
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}]',
            "score", id="no-score",
        ),
        pytest.param(
            '{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}',
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, -1, 1], "score": 0.5}]',
            "width and height must be finite", id="negative-width",
        ),
        pytest.param(
            '{"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1}]}',
            '[{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": NaN}]',
            "not a number", id="nan-score",
        ),
    ],
)  # fmt: skip
def test_coco_bad_files_give_one_line_errors(run, tmp_path, gt_text, dt_text, message):
    (tmp_path / "gt.json").write_text(gt_text)
    (tmp_path / "dt.json").write_text(dt_text)
    result = run("coco", "--gt", str(tmp_path / "gt.json"), "--dt", str(tmp_path / "dt.json"), code=1)
    assert message in result.output and "Traceback" not in result.output


def test_coco_missing_file(run, tmp_path):
    result = run("coco", "--gt", str(tmp_path / "nope.json"), "--dt", str(tmp_path / "nope.json"), code=1)
    assert "cannot read ground truth" in result.output


@pytest.fixture
def npz_file(tmp_path):
    labels, probs = classification_like(22, 3000, 8)
    np.savez(tmp_path / "preds.npz", labels=labels, probabilities=probs)
    return tmp_path / "preds.npz", labels, probs


def test_classification_json_keys_and_values(run, npz_file):
    from sklearn.metrics import accuracy_score, top_k_accuracy_score

    path, labels, probs = npz_file
    out = json.loads(run("classification", "--npz", str(path), "--json").stdout)
    expected_keys = {"accuracy", "top5_accuracy", "per_class", "confusion_matrix", "ece", "adaptive_ece", "mce",
                     "classwise_ece", "brier", "reliability"}  # fmt: skip
    assert expected_keys <= set(out)
    assert out["accuracy"] == accuracy_score(labels, probs.argmax(axis=1))
    assert out["top5_accuracy"] == top_k_accuracy_score(labels, probs, k=5, labels=np.arange(8))
    assert set(out["per_class"]["0"]) == {"precision", "recall", "f1", "support"}
    assert sum(c["support"] for c in out["per_class"].values()) == 3000
    assert np.array(out["confusion_matrix"]).shape == (8, 8)
    assert out["ece"] == pytest.approx(torchmetrics_ece(labels, probs, 15, "l1"), abs=1e-6)
    assert len(out["reliability"]) == 16 and sum(b["count"] for b in out["reliability"]) == 3000


def test_classification_table(run, npz_file):
    out = run("classification", "--npz", str(npz_file[0])).stdout
    for needle in (
        "accuracy",
        "top-5 accuracy",
        "ECE (15 bins, L1)",
        "Brier score",
        "reliability diagram",
        "confusion matrix",
    ):
        assert needle in out


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        pytest.param({"labels": np.zeros(3, int)}, "has no probabilities", id="missing-array"),
        pytest.param(
            {"labels": np.zeros(2, int), "probabilities": np.full((3, 2), 0.5)},
            "one entry per row",
            id="length",
        ),
        pytest.param(
            {"labels": np.array([0, 5]), "probabilities": np.full((2, 2), 0.5)},
            "labels[1] = 5",
            id="label-range",
        ),
        pytest.param(
            {"labels": np.array([0, 1]), "probabilities": np.array([[2.0, -1.0], [0.5, 0.5]])},
            "row 0",
            id="logits",
        ),
    ],
)
def test_classification_bad_files_give_one_line_errors(run, tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    result = run("classification", "--npz", str(tmp_path / "bad.npz"), code=1)
    assert message in result.output and "Traceback" not in result.output


def test_classification_not_an_npz(run, tmp_path):
    (tmp_path / "x.npz").write_text("hello")
    assert "not a .npz archive" in run("classification", "--npz", str(tmp_path / "x.npz"), code=1).output


def test_progress_bar_on_large_inputs(run, tmp_path, monkeypatch):
    import monitor.server.cli.eval as eval_module

    monkeypatch.setattr(eval_module, "_BAR_ROWS", 100)
    monkeypatch.setattr(eval_module, "_ROWS_PER_CHUNK", 700)
    labels, probs = classification_like(23, 3000, 5)
    np.savez(tmp_path / "p.npz", labels=labels, probabilities=probs)
    chunked = run("classification", "--npz", str(tmp_path / "p.npz"), "--json")
    assert "scanning rows" in chunked.stderr
    monkeypatch.setattr(eval_module, "_ROWS_PER_CHUNK", 10**6)
    assert json.loads(run("classification", "--npz", str(tmp_path / "p.npz"), "--json").stdout) == json.loads(
        chunked.stdout
    )


def test_help_explains(run):
    for args in (["--help"], ["coco", "--help"], ["classification", "--help"]):
        out = run(*args).output
        assert "Usage: cvmon eval" in out and len(out.splitlines()) > 5
