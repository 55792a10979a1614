"""The torch adapter with real torch modules on CPU.

The CUDA-synchronised timing path (torch.cuda.synchronize around the forward pass) runs only
when the module's parameters are on a GPU; ``test_cuda_timing_synchronises`` runs it on a GPU
machine and is skipped elsewhere.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from monitor.adapters import TorchAdapter


def classifier() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10)).eval()


def test_logits_and_hooked_embedding_are_logged_and_output_returned_as_is(digits, mon, sent):
    net = classifier()
    model = TorchAdapter(net, mon, output="logits", embedding_layer="2")
    x = torch.from_numpy(digits.images[:5])
    with torch.inference_mode():
        out = model(x, cohort=[{"camera": f"cam-{i}"} for i in range(5)], prediction_ids=list("abcde"))
        expected = net(x)
        hidden = net[2](net[1](net[0](x)))
    torch.testing.assert_close(out, expected)
    assert mon.flush(10)
    for i, pid in enumerate("abcde"):
        rec = sent.records[pid]
        np.testing.assert_allclose(rec["probabilities"], torch.softmax(expected[i], 0).numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(rec["embedding"], hidden[i].numpy(), rtol=1e-6)
        assert rec["cohort"] == {"camera": f"cam-{i}"} and rec["latency_ms"] > 0


def test_the_hook_is_removable_and_unknown_layers_refused(mon):
    net = classifier()
    with pytest.raises(ValueError, match="no layer 'fc9'"):
        TorchAdapter(net, mon, embedding_layer="fc9")
    model = TorchAdapter(net, mon, embedding_layer="2")
    model.remove()
    assert not net[2]._forward_hooks


class TinyDetector(nn.Module):
    """torchvision's output shape: one dict of boxes, labels and scores per image."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for i, img in enumerate(images):
            k = i + 1  # a different number of boxes per image
            boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0]]).repeat(k, 1) + img.mean()
            out.append({"boxes": boxes, "labels": torch.arange(k) % 2, "scores": torch.linspace(0.9, 0.5, k)})
        return out


def test_torchvision_style_detections(mon, sent):
    model = TorchAdapter(TinyDetector(), mon, task="detection")
    images = [torch.zeros(3, 8, 8), torch.ones(3, 8, 8)]
    out = model(images, prediction_ids=["f0", "f1"])
    assert len(out) == 2
    assert mon.flush(10)
    assert sent.records["f0"]["boxes"].tolist() == [0, 0, 4, 4]
    np.testing.assert_array_equal(sent.records["f1"]["box_classes"], [0, 1])
    np.testing.assert_allclose(sent.records["f1"]["box_scores"], [0.9, 0.5])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the CUDA timing path needs a GPU")
def test_cuda_timing_synchronises(mon, sent, monkeypatch):  # pragma: no cover - GPU machines only
    calls = []
    real = torch.cuda.synchronize
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: (calls.append(device), real(device)))
    net = classifier().cuda()
    model = TorchAdapter(net, mon, embedding_layer="2")
    with torch.inference_mode():
        model(torch.zeros(4, 8, 8, device="cuda"), prediction_ids=list("wxyz"))
    assert len(calls) == 2
    assert mon.flush(10) and len(sent.records) == 4
