"""Resources per inference from the adapters: device, batch size, CPU time (real runtimes on this
machine's CPU), and NVML's GPU readings (on a GPU machine; skipped here with the reason)."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import onnxruntime as ort
import pytest
import torch
import tritonclient.http as triton_http

from monitor.adapters import OnnxAdapter, Outputs, TorchAdapter, TritonAdapter
from monitor.adapters._resources import GpuProbe, UsageMeter
from monitor.wire import ModelSpec, parse_prediction
from tests.adapters.conftest import flat
from tests.adapters.kserve import KServeServer

DIGITS = ModelSpec.create("digits", "classification", [str(i) for i in range(10)])


def _server_accepts(record: dict) -> None:
    """The server's validator takes the record as the SDK sent it (arrays re-encoded as lists)."""
    wire = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in record.items()}
    parsed = parse_prediction(wire, {"digits": DIGITS}.get, now=datetime.now(UTC))
    assert parsed.resources is not None and parsed.resources.to_wire() == record["resources"]


def test_onnx_on_cpu_logs_device_batch_size_and_cpu_time(digits, mon, sent):
    session = ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])
    model = OnnxAdapter(session, mon, Outputs(probabilities="probabilities"))
    model.run(None, {"X": flat(digits.images[:5])}, prediction_ids=[f"a{i}" for i in range(5)])
    model.run(None, {"X": flat(digits.images[:3])}, prediction_ids=[f"b{i}" for i in range(3)])
    assert mon.flush(10)
    first = {tuple(sorted(sent.records[f"a{i}"]["resources"].items())) for i in range(5)}
    assert len(first) == 1  # one call, one set of resources shared by its predictions
    res = sent.records["a0"]["resources"]
    assert res["device"] == "cpu" and res["batch_size"] == 5 and res["cpu_time_ms"] >= 0
    assert set(res) == {"device", "batch_size", "cpu_time_ms"}  # no GPU fields on a CPU
    assert sent.records["b2"]["resources"]["batch_size"] == 3
    _server_accepts(sent.records["a0"])


class BusyNet(torch.nn.Module):
    """A classifier whose forward pass burns ``ms`` of this process's CPU time."""

    def __init__(self, ms: float) -> None:
        super().__init__()
        self.ms = ms
        self.linear = torch.nn.Linear(4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        end = time.process_time() + self.ms / 1000
        while time.process_time() < end:
            pass
        return self.linear(x)


def test_torch_on_cpu_logs_the_cpu_time_the_forward_pass_used(mon, sent):
    model = TorchAdapter(BusyNet(30.0), mon)
    with torch.inference_mode():
        model(torch.zeros(4, 4), prediction_ids=list("abcd"))
    assert mon.flush(10)
    res = sent.records["a"]["resources"]
    assert res["device"] == "cpu" and res["batch_size"] == 4
    # at least the 30 ms the pass burnt (the process's other threads may add a little)
    assert 30.0 <= res["cpu_time_ms"] < 30_000
    _server_accepts({**sent.records["a"], "model": "digits"})


def test_triton_logs_the_configured_device_and_batch_size_but_no_cpu_time(digits, mon, sent):
    session = ort.InferenceSession(digits.onnx, providers=["CPUExecutionProvider"])
    with KServeServer("digits", session) as server:
        client = triton_http.InferenceServerClient(server.url)
        try:
            model = TritonAdapter(client, "digits", mon, Outputs(probabilities="probabilities"), device="NVIDIA L4")
            x = flat(digits.images[:6])
            inp = triton_http.InferInput("X", list(x.shape), "FP32")
            inp.set_data_from_numpy(x)
            model.infer([inp], prediction_ids=[f"t{i}" for i in range(6)])
        finally:
            client.close()
    assert mon.flush(10)
    # the work ran in the server: its device is what the caller configured, its CPU is not ours
    assert sent.records["t0"]["resources"] == {"device": "NVIDIA L4", "batch_size": 6}


def _nvml_gpu() -> str | None:
    """Why the NVML path cannot run here (None: it can)."""
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return f"pynvml finds no GPU ({exc})"
    try:
        if pynvml.nvmlDeviceGetCount() == 0:
            return "pynvml finds no GPU (0 devices)"
    finally:
        pynvml.nvmlShutdown()
    return None


NO_GPU = _nvml_gpu()


@pytest.mark.skipif(NO_GPU is not None, reason=f"the NVML path needs an NVIDIA GPU: {NO_GPU}")
def test_nvml_reads_utilisation_and_memory_of_the_gpu(mon, sent):  # pragma: no cover - GPU machines only
    probe = GpuProbe(0)
    assert probe.problem is None and probe.name
    util, memory = probe.sample()
    assert util is not None and 0.0 <= util <= 1.0
    assert memory is not None and memory > 0
    if torch.cuda.is_available():
        net = torch.nn.Linear(64, 10).cuda()
        model = TorchAdapter(net, mon, output="logits")
        with torch.inference_mode():
            model(torch.zeros(16, 64, device="cuda"), prediction_ids=[f"g{i}" for i in range(16)])
        assert mon.flush(10)
        res = sent.records["g0"]["resources"]
        assert res["device"] == torch.cuda.get_device_name(0) and res["batch_size"] == 16
        assert 0.0 <= res["gpu_utilization_ratio"] <= 1.0 and res["gpu_memory_bytes"] > 0


class FakeNvml:
    """A stand-in for pynvml on this GPU-less machine (NVML cannot run here): three GPUs, to check
    the CUDA-to-NVML numbering and the read interval; the real path is the test above."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.reads = 0

    def nvmlInit(self) -> None:
        pass

    def nvmlDeviceGetHandleByIndex(self, i: int) -> str:
        if not 0 <= i < 3:
            raise self.NVMLError("Invalid Argument")
        return f"idx{i}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:
        return {"GPU-aaaa": "idx0", "GPU-bbbb": "idx1", "GPU-cccc": "idx2"}[uuid]

    def nvmlDeviceGetName(self, handle: str) -> bytes:
        return f"Fake GPU {handle[-1]}".encode()

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:
        self.reads += 1
        return SimpleNamespace(gpu=40 + self.reads)

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:
        return SimpleNamespace(used=1 << 30, total=16 << 30)


@pytest.mark.parametrize(
    ("index", "uuid", "visible", "name"),
    [
        pytest.param(1, None, None, "Fake GPU 1", id="no-visible-devices"),
        pytest.param(0, None, "2,0", "Fake GPU 2", id="visible-indices"),
        pytest.param(1, None, "GPU-cccc,GPU-aaaa", "Fake GPU 0", id="visible-uuids"),
        pytest.param(0, "bbbb", "2", "Fake GPU 1", id="torch-uuid-wins"),
    ],
)
def test_cuda_devices_map_to_nvml_devices(index, uuid, visible, name):
    environ = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    probe = GpuProbe(index, uuid=uuid, nvml=FakeNvml(), environ=environ)
    assert probe.problem is None and probe.name == name


def test_nvml_is_read_at_most_once_per_interval():
    now = [100.0]
    nvml = FakeNvml()
    probe = GpuProbe(0, nvml=nvml, interval_s=0.2, clock=lambda: now[0], environ={})
    assert probe.sample() == (0.41, 1 << 30)
    now[0] += 0.1
    assert probe.sample() == (0.41, 1 << 30) and nvml.reads == 1
    now[0] += 0.2
    assert probe.sample() == (0.42, 1 << 30) and nvml.reads == 2


def test_without_nvml_the_gpu_fields_are_left_out_with_one_warning(caplog):
    probe = GpuProbe(5, nvml=FakeNvml(), environ={})  # no such device
    assert probe.name is None and "Invalid Argument" in (probe.problem or "")
    with caplog.at_level(logging.WARNING, logger="monitor.adapters"):
        meter = UsageMeter("NVIDIA T4", probe)
    assert "GPU utilisation and memory are not logged" in caplog.text
    usage = meter.stop(meter.start())
    assert usage.device == "NVIDIA T4" and usage.gpu_utilization_ratio is None and usage.gpu_memory_bytes is None
    assert usage.resources(8).to_wire()["batch_size"] == 8
