"""The torch adapter on a GPU: the latency it records next to CUDA-event timing of the same forward.

CUDA kernels run asynchronously, so a wall clock around ``model(x)`` measures only the kernel
launches; the adapter synchronises the device before and after the forward when the model is on
CUDA. This prints the three numbers for a small convolutional network (8 × conv 64→64 3×3 on a
batch of 64 × 64 × 112 × 112), 20 forwards after 3 warm-ups:

    python bench/torch_gpu.py          # needs a CUDA GPU

Measured on an NVIDIA H200 (torch 2.11, CUDA 13): CUDA events p50 6.09 ms, wall clock without
synchronising 0.46 ms, adapter-recorded latency_ms p50 6.06 ms. tests/adapters/test_torch.py's
CUDA test (skipped without a GPU) passed on the same machine.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time

import torch
from torch import nn

from monitor.adapters import TorchAdapter
from monitor.sdk import Client, MockTransport, Request, Response

FORWARDS = 20


def main() -> None:
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this benchmark times the adapter's GPU path")
    recorded: dict[str, float] = {}

    def receive(request: Request) -> Response:
        records = request.records()
        recorded.update((r["prediction_id"], r["latency_ms"]) for r in records)
        return Response(200, json.dumps({"accepted": len(records), "duplicates": 0, "rejected": []}).encode())

    layers = [m for _ in range(8) for m in (nn.Conv2d(64, 64, 3, padding=1), nn.ReLU())]
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)).cuda().eval()
    x = torch.randn(64, 64, 112, 112, device="cuda")
    events, launches = [], []
    with tempfile.TemporaryDirectory() as spool, torch.inference_mode():
        mon = Client("http://cvmon.invalid", model="bench", version="v1", spool_dir=spool, transport=MockTransport(receive))
        model = TorchAdapter(net, mon)
        for _ in range(3):
            net(x)
        torch.cuda.synchronize()
        for i in range(FORWARDS):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            net(x)
            end.record()
            torch.cuda.synchronize()
            events.append(start.elapsed_time(end))
            t0 = time.perf_counter()
            net(x)
            launches.append((time.perf_counter() - t0) * 1e3)
            torch.cuda.synchronize()
            model(x, prediction_ids=[f"{i}-{k}" for k in range(len(x))])
        mon.flush(10)
        mon.close()
    adapter = [recorded[f"{i}-0"] for i in range(FORWARDS)]
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, p50 of {FORWARDS} forwards:")
    print(f"  CUDA events                 {statistics.median(events):8.2f} ms")
    print(f"  wall clock, no synchronise  {statistics.median(launches):8.2f} ms")
    print(f"  adapter-recorded latency_ms {statistics.median(adapter):8.2f} ms")


if __name__ == "__main__":
    main()
