"""The SDK's keep policy and thumbnails, against the records it actually sends (MockTransport)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.sdk import Client, MockTransport, Request, Response, SamplePolicy
from monitor.sdk._samples import Keeper
from monitor.wire_images import image_info
from tests.samples.conftest import digit_image, png

HOUR = 3600.0
T0 = 1_800_000_000.0 - 1_800_000_000.0 % HOUR  # the start of an hour


class Sink:
    def __init__(self) -> None:
        self.requests: list[Request] = []

    def __call__(self, request: Request) -> Response:
        self.requests.append(request)
        n = len(request.records())
        return Response(200, json.dumps({"accepted": n, "duplicates": 0, "rejected": []}).encode())

    def samples(self) -> list[dict[str, Any]]:
        return [r for q in self.requests if q.path == "/v1/samples" for r in q.records()]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[Any]:
    made: list[Client] = []

    def make(policy: SamplePolicy) -> tuple[Client, Sink]:
        sink = Sink()
        mon = Client("http://cvmon.invalid", model="m", version="v1", spool_dir=tmp_path / f"spool{len(made)}",
                     transport=MockTransport(sink), samples=policy)  # fmt: skip
        made.append(mon)
        return mon, sink

    yield make
    for mon in made:
        mon.close(5)


def test_errors_and_low_confidence_are_kept(client: Any) -> None:
    mon, sink = client(SamplePolicy())
    image = png(digit_image(0, 16))
    sure = mon.log_classification([0.9, 0.05, 0.05], image=image)
    unsure = mon.log_classification([0.4, 0.35, 0.25], image=image)
    unsure_conf = mon.log_classification(predicted_class=1, confidence=0.3, image=image)
    with pytest.raises(RuntimeError), mon.timed() as rec:
        rec.image = image
        raise RuntimeError("model crashed")
    in_band = mon.log_detection([[0, 0, 4, 4], [1, 1, 5, 5]], [0, 1], [0.95, 0.3], image=image)
    background = mon.log_detection([[0, 0, 4, 4]], [0], [0.05], image=image)
    assert mon.flush(10)
    got = {s["prediction_id"]: s["reason"] for s in sink.samples()}
    assert got == {unsure: "low_confidence", unsure_conf: "low_confidence", rec.prediction_id: "error", in_band: "low_confidence"}
    assert sure not in got and background not in got


def test_the_rate_is_a_deterministic_share_of_ids_per_cohort(client: Any) -> None:
    mon, sink = client(SamplePolicy(rate=0.3, low_confidence=None, cohort_rates={"camera": {"cam-3": 1.0}}, max_per_hour=10**6))
    image = png(digit_image(0, 8))
    ids = [mon.log_classification([1.0, 0.0], image=image, cohort={"camera": "cam-1"}, timestamp=T0) for _ in range(3000)]
    cam3 = [mon.log_classification([1.0, 0.0], image=image, cohort={"camera": "cam-3"}, timestamp=T0) for _ in range(50)]
    assert mon.flush(30)
    kept = {s["prediction_id"] for s in sink.samples()}
    expected = {pid for pid in ids if zlib.crc32(pid.encode()) % 1_000_000 < 300_000}
    assert kept == expected | set(cam3)
    assert 0.25 < len(expected) / len(ids) < 0.35


def test_at_most_max_per_hour_are_kept_by_the_rules(client: Any) -> None:
    mon, sink = client(SamplePolicy(rate=1.0, max_per_hour=7))
    image = png(digit_image(0, 8))
    for ts in (T0, T0 + 10, T0 + HOUR):
        for _ in range(5):
            mon.log_classification([0.5, 0.5], image=image, timestamp=ts)
    assert mon.flush(10)
    hours = sorted(int(s["timestamp"] // HOUR) for s in sink.samples())
    assert hours.count(int(T0 // HOUR)) == 7 and hours.count(int(T0 // HOUR) + 1) == 5


def test_the_reservoir_sends_k_of_each_hour_when_it_ends(client: Any) -> None:
    mon, sink = client(SamplePolicy(reservoir_per_hour=5, low_confidence=None))
    image = png(digit_image(0, 8))
    first = [mon.log_classification([1.0, 0.0], image=image, timestamp=T0 + i) for i in range(200)]
    assert mon.flush(10) and sink.samples() == []  # the hour is not over
    mon.log_classification([1.0, 0.0], image=image, timestamp=T0 + HOUR)
    assert mon.flush(10)
    sent = sink.samples()
    assert len(sent) == 5 and {s["reason"] for s in sent} == {"reservoir"} and {s["prediction_id"] for s in sent} <= set(first)
    mon.close(10)  # closing sends the current hour's reservoir as it stands
    assert len(sink.samples()) == 6


def test_the_reservoir_is_uniform() -> None:
    from scipy import stats

    n, k, trials = 20, 5, 4000
    counts = np.zeros(n)
    for _ in range(trials):
        keeper = Keeper(SamplePolicy(reservoir_per_hour=k))
        for i in range(n):
            keeper.offer(str(i), T0, b"x", None)
        for record in keeper.drain():
            counts[int(record["prediction_id"])] += 1
    assert counts.sum() == k * trials
    assert stats.chisquare(counts).pvalue > 0.001  # every image kept with probability k/n


def test_a_kept_array_is_copied_and_thumbnailed_within_the_caps(client: Any) -> None:
    from PIL import Image

    mon, sink = client(SamplePolicy(rate=1.0, max_side=256, max_bytes=8192))
    frame = np.random.default_rng(0).integers(0, 255, (1500, 2000, 3), dtype=np.uint8)  # noise: the worst case
    original = frame.copy()
    mon.log_classification([0.5, 0.5], image=frame)
    frame[:] = 0  # the caller reuses its buffer at once
    small = png(digit_image(3, 20))
    mon.log_classification([0.5, 0.5], image=small)
    assert mon.flush(30)
    big, tiny = sink.samples()
    data = base64.b64decode(big["image"]["base64"])
    assert len(data) <= 8192 and max(image_info(data).width, image_info(data).height) <= 256
    assert big["source_size"] == [2000, 1500]
    mean = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=float).mean()
    assert abs(mean - original.mean()) < 10  # the picture, not the zeros written after the call
    assert base64.b64decode(tiny["image"]["base64"]) == small and "source_size" not in tiny


def test_programming_errors_raise_on_the_call(client: Any) -> None:
    mon, _ = client(SamplePolicy(rate=1.0))
    with pytest.raises(ValueError, match="uint8"):
        mon.log_classification([0.5, 0.5], image=np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="encoded bytes"):
        mon.log_classification([0.5, 0.5], image="frame.jpg")
    with pytest.raises(ValueError, match="rates"):
        SamplePolicy(rate=1.5)


def test_without_a_policy_images_are_ignored(tmp_path: Path) -> None:
    sink = Sink()
    mon = Client("http://cvmon.invalid", model="m", version="v1", spool_dir=tmp_path, transport=MockTransport(sink))
    mon.log_classification([0.4, 0.6], image=b"not even an image")
    assert mon.flush(10)
    mon.close(5)
    assert sink.samples() == [] and len(sink.requests) == 1


def test_arrays_need_the_images_extra_and_say_how_to_get_it(tmp_path: Path) -> None:
    code = f"""
import sys
sys.modules["PIL"] = None  # Pillow not installed
import numpy as np
from monitor.sdk import Client, MockTransport, Response, SamplePolicy
mon = Client("http://x.invalid", model="m", version="v", spool_dir={str(tmp_path)!r},
             transport=MockTransport(lambda r: Response(200, b'{{"accepted":1,"duplicates":0,"rejected":[]}}')),
             samples=SamplePolicy(rate=1.0))
mon.log_classification([0.5, 0.5], image={png(digit_image(0, 8))!r})  # encoded bytes need nothing
try:
    mon.log_classification([0.5, 0.5], image=np.zeros((8, 8, 3), np.uint8))
except ImportError as exc:
    print(exc)
print(mon.flush(10), mon.stats().rejected)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'cvmon[images]'" in out and "True 0" in out
