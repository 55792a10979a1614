"""The drift job end to end on PostgreSQL and SQLite: predictions through the HTTP API, the jobs run
with an injected clock, results read back from the metrics API and a parsed /metrics scrape.

The classifier is the digits MLP of bench/drift_digits.py: its hidden layer is the embedding, its
softmax the confidences. One camera's images are rotated and blurred from the third hour on; the
others keep showing the reference's distribution. Sizes and α make the outcome a consequence of the
detectors' guarantees rather than of luck: 250 images against 1 200 give the drifted camera the
smallest p-value a detector can give, far below α = 0.002, and a clean window flags with
probability at most 0.002 per test (the clean cameras' smallest p-value here is 0.014).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from monitor.server.jobs import run_once
from monitor.server.store import tables as t
from monitor.wire import encode_array

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not

NOW = datetime(2026, 11, 20, 15, 10, tzinfo=UTC)
HOUR = timedelta(hours=1)
#: 10:00 .. 14:00; the run at 15:10 sees them all completed
HOURS = [NOW.replace(minute=0) - h * HOUR for h in (5, 4, 3, 2, 1)]
REFERENCE_HOURS, LATER_HOURS = HOURS[:2], HOURS[2:]
CAMERAS = ("cam-1", "cam-2", "cam-3", "cam-4")
DRIFTED = "cam-3"
CLEAN = tuple(c for c in CAMERAS if c != DRIFTED)
CLASSES = [str(d) for d in range(10)]
SETTINGS = {
    "cohort_keys": ("camera",), "drift_windows": ("1h",), "drift_alpha": 0.002, "drift_min_samples": 100,
    "drift_reference_size": 1200, "drift_min_labels": 200,
}  # fmt: skip


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Traffic:
    """Camera images through the digits model, as prediction records and their ground truth."""

    def __init__(self, digits: Any, model: str, seed: int) -> None:
        self.digits, self.model = digits, model
        self.rng = np.random.default_rng(seed)
        self.count = 0

    def hour(
        self, hour: datetime, camera: str, n: int, *, drifted: bool = False, version: str = "v1"
    ) -> tuple[list[dict], list[dict]]:
        from testkit import digits as drift_digits

        idx = self.rng.integers(0, len(self.digits.images), n)
        images = np.clip(self.digits.images[idx] + self.rng.normal(0.0, 0.4, (n, 8, 8)), 0.0, drift_digits.PIXEL_MAX)
        if drifted:  # a camera knocked askew and out of focus
            images = drift_digits.blur(drift_digits.rotate(images, 30.0), 0.8)
        emb = self.digits.embed(images).astype(np.float32)
        probs = self.digits.predict_proba(images).astype(np.float32)
        preds, truth = [], []
        for i in range(n):
            pid = f"{self.model}-{self.count}"
            self.count += 1
            ts = hour + timedelta(seconds=float(self.rng.uniform(0, 3599)))
            preds.append({
                "prediction_id": pid, "model": self.model, "model_version": version, "timestamp": ts.isoformat(),
                "cohort": {"camera": camera}, "probabilities": encode_array(probs[i]), "embedding": encode_array(emb[i]),
            })  # fmt: skip
            truth.append({"prediction_id": pid, "model": self.model, "label": CLASSES[int(self.digits.labels[idx[i]])]})
        return preds, truth


def post(client: Any, preds: list[dict], truth: list[dict]) -> None:
    for k in range(0, len(preds), 500):
        body = client.post("/v1/predictions", json={"records": preds[k : k + 500]}).json()
        assert body["accepted"] == len(preds[k : k + 500]), body
    for k in range(0, len(truth), 1000):
        assert client.post("/v1/ground-truth", json={"records": truth[k : k + 1000]}).json()["accepted"] == len(
            truth[k : k + 1000]
        )


def run(api: Any, clock: Clock, model: str) -> dict[str, str]:
    outcomes = run_once(api.db.engine, api.settings, clock=clock, models=[model])
    assert all(o.status == "ok" for o in outcomes), outcomes
    return {o.job: o.detail for o in outcomes}


def series(client: Any, model: str, metric: str, **params: Any) -> dict[tuple[str, str, str], float | None]:
    """{(window start, cohort, class): value} of the 1h history."""
    body = client.get(
        f"/v1/models/{model}/metrics",
        params={"window": "1h", "metric": metric, "since": HOURS[0].isoformat(), "until": (NOW + 3 * HOUR).isoformat(),
                "limit": 10_000, **params},
    ).json()  # fmt: skip
    return {(p["window_start"], p["cohort"], p["cls"]): p["value"] for p in body["series"]}


def iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


def scrape(client: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def drift_series(scraped: dict, name: str, model: str, camera: str, detector: str, feature: str) -> float | None:
    labels = (
        ("camera", camera),
        ("detector", detector),
        ("feature", feature),
        ("model", model),
        ("version", "v1"),
        ("window", "1h"),
    )
    return scraped.get((name, labels))


def fitted(engine: Any, model: str) -> list[tuple[str, str, str, datetime]]:
    r = t.drift_references.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.version, r.detector, r.feature, r.fitted_at)
            .where(r.model == model)
            .order_by(r.detector, r.feature)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


@pytest.fixture
def drifting_camera(make_api: Callable[..., Any], model_name: str, digits: Any) -> tuple[Any, Clock, Traffic]:
    """Two reference hours of four clean cameras, three later hours in which cam-3 drifts, every
    prediction labelled, and a second version too small to have a reference."""
    clock = Clock(NOW)
    api = make_api(clock=clock, **SETTINGS)
    traffic = Traffic(digits, model_name, seed=11)
    preds, truth = [], []
    for hour in REFERENCE_HOURS:
        for camera in CAMERAS:
            p, g = traffic.hour(hour, camera, 150)
            preds += p
            truth += g
    for hour in LATER_HOURS:
        for camera in CAMERAS:
            p, g = traffic.hour(hour, camera, 250, drifted=camera == DRIFTED)
            preds += p
            truth += g
    small, _ = traffic.hour(LATER_HOURS[-1], "cam-1", 150, version="v2")
    with api.admin() as c:
        assert c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES}).status_code == 201
        post(c, preds + small, truth)
    return api, clock, traffic


def test_drifted_camera_is_flagged_and_clean_cameras_are_not(drifting_camera, model_name):
    api, clock, _ = drifting_camera
    details = run(api, clock, model_name)
    assert details["drift"].startswith("5 windows scored, 0 with nothing to score, 0 left for later runs")
    assert "v2: waiting for 1200 predictions of v2 (150 so far)" in details["drift"]

    with api.admin() as c:
        detected = series(c, model_name, "drift_detected", version="v1")
        for hour in LATER_HOURS:
            for feature in ("mmd:embedding", "ks:confidence", "pca_ks:embedding"):
                assert detected[(iso(hour), f"camera:{DRIFTED}", feature)] == 1.0, (hour, feature)
                for camera in CLEAN:
                    assert detected[(iso(hour), f"camera:{camera}", feature)] == 0.0, (hour, camera, feature)
        # the reference hours are the reference: no drift rows, an estimate all the same
        assert not any(start in (iso(h) for h in REFERENCE_HOURS) for start, _, _ in detected)
        estimated = series(c, model_name, "estimated_accuracy", version="v1")
        assert (iso(REFERENCE_HOURS[0]), "camera:cam-1", "") in estimated
        # v2 has no reference yet: nothing
        assert series(c, model_name, "drift_score", version="v2") == {}

        # the estimate follows the realised accuracy of the clean cameras
        realised = series(c, model_name, "accuracy", version="v1")
        for hour in LATER_HOURS:
            for camera in CLEAN:
                key = (iso(hour), f"camera:{camera}", "")
                assert estimated[key] == pytest.approx(realised[key], abs=0.05), (hour, camera)
        per_class = series(c, model_name, "estimated_precision", version="v1", cohort="")
        assert {cls for _, _, cls in per_class} == set(CLASSES)

        # /metrics: the latest completed hour (14:00) of every slice
        scraped = scrape(c)
        latest = LATER_HOURS[-1]
        for camera in CAMERAS:
            want = 1.0 if camera == DRIFTED else 0.0
            assert drift_series(scraped, "cvmon_drift_detected", model_name, camera, "mmd", "embedding") == want
            assert drift_series(scraped, "cvmon_drift_detected", model_name, camera, "ks", "confidence") == want
            p_value = drift_series(scraped, "cvmon_drift_p_value", model_name, camera, "mmd", "embedding")
            assert p_value == detected_p(c, model_name, latest, camera)
        assert drift_series(scraped, "cvmon_drift_score", model_name, DRIFTED, "psi", "class_mix") is not None
        assert (
            drift_series(scraped, "cvmon_drift_p_value", model_name, DRIFTED, "psi", "class_mix") is None
        )  # no p-value
        for camera in CLEAN:
            labels = (("camera", camera), ("model", model_name), ("version", "v1"), ("window", "1h"))
            exported = scraped[("cvmon_estimated_accuracy_ratio", labels)]
            assert exported == estimated[(iso(latest), f"camera:{camera}", "")]
            assert exported == pytest.approx(realised[(iso(latest), f"camera:{camera}", "")], abs=0.05)


def detected_p(client: Any, model: str, hour: datetime, camera: str) -> float | None:
    return series(
        client, model, "drift_p_value", version="v1", cohort=f"camera:{camera}", **{"class": "mmd:embedding"}
    )[(iso(hour), f"camera:{camera}", "mmd:embedding")]


def test_references_are_fitted_once_and_again_when_pinned(drifting_camera, model_name):
    api, clock, traffic = drifting_camera
    run(api, clock, model_name)
    first = fitted(api.db.engine, model_name)
    assert {(d, f) for v, d, f, _ in first if v == "v1"} == {
        ("mmd", "embedding"), ("pca_ks", "embedding"), ("ks", "confidence"), ("chi_square", "class_mix"),
        ("psi", "class_mix"), ("label_free", "accuracy"),
    }  # fmt: skip
    # an hour later: one new window, scored against the stored reference; then nothing to do
    clock.now = NOW + HOUR
    preds, truth = [], []
    for camera in CAMERAS:
        p, g = traffic.hour(NOW.replace(minute=0), camera, 120)
        preds += p
        truth += g
    with api.admin() as c:
        post(c, preds, truth)
    assert run(api, clock, model_name)["drift"].startswith("1 windows scored")
    assert fitted(api.db.engine, model_name) == first
    assert run(api, clock, model_name)["drift"].startswith("0 windows scored")
    # late predictions for 13:00 score that hour again, and only it
    late, _ = traffic.hour(LATER_HOURS[1], "cam-2", 5)
    with api.admin() as c:
        post(c, late, [])
    assert run(api, clock, model_name)["drift"].startswith("1 windows scored")

    # pinning another reference drops the fitted one; the next run fits it and scores again
    spec = {"version": "v1", "start": LATER_HOURS[0].isoformat(), "end": LATER_HOURS[2].isoformat()}
    with api.admin() as c:
        put = c.put(f"/v1/models/{model_name}/reference", json=spec)
        assert put.status_code == 200, put.text
        assert put.json()["kind"] == "range" and put.json()["first"] is None
        got = c.get(f"/v1/models/{model_name}/reference").json()
        assert [s["version"] for s in got["specs"]] == ["v1"] and got["default"]["first"] == 1200
        assert got["fitted"] == []

        clock.now += timedelta(minutes=1)
        assert run(api, clock, model_name)["drift"].startswith("6 windows scored")
        (ref,) = c.get(f"/v1/models/{model_name}/reference").json()["fitted"]
        assert (ref["reference_start"], ref["reference_end"]) == (iso(LATER_HOURS[0]), iso(LATER_HOURS[2]))
        mmd = next(d for d in ref["detectors"] if d["detector"] == "mmd")
        assert mmd["n_reference"] == 2 * 4 * 250 + 5 and ref["calibrated_on"] == 2 * 4 * 250
        # 12:00 and 13:00 are the reference now: no drift rows for them; the other hours are scored anew
        detected = series(c, model_name, "drift_detected", version="v1")
        assert {start for start, _, _ in detected} == {
            iso(h) for h in (*REFERENCE_HOURS, LATER_HOURS[2], NOW.replace(minute=0))
        }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(
            {"first": 500, "start": "2026-11-20T10:00:00Z", "end": "2026-11-20T11:00:00Z"},
            "not both",
            id="first-and-range",
        ),
        pytest.param({"start": "2026-11-20T11:00:00Z", "end": "2026-11-20T10:00:00Z"}, "before end", id="empty-range"),
        pytest.param({"start": "2026-11-20T10:00:00Z"}, "both start and end", id="open-range"),
        pytest.param({"start": "2026-11-20T10:00:00", "end": "2026-11-20T11:00:00Z"}, "timezone", id="naive-time"),
        pytest.param({"version": "v1"}, "give first", id="nothing-to-pin"),
        pytest.param({"first": 50}, "at least drift_min_samples", id="too-small"),
    ],
)
def test_bad_reference_specs_are_refused(api, model_name, body, message):
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES})
        answer = c.put(f"/v1/models/{model_name}/reference", json=body)
    assert answer.status_code == 422 and message in answer.text


def test_reference_api_checks_scope_and_model(api, model_name):
    reader = api.create_key(["read"])
    other = api.create_key(["read", "admin"], models=["someone-else"])
    with api.admin() as c:
        c.put(f"/v1/models/{model_name}", json={"task": "classification", "classes": CLASSES})
        assert c.put("/v1/models/nope/reference", json={"first": 500}).status_code == 404
    with api.client(reader) as c:
        assert c.put(f"/v1/models/{model_name}/reference", json={"first": 500}).status_code == 403
        assert c.get(f"/v1/models/{model_name}/reference").status_code == 200
    with api.client(other) as c:
        assert c.get(f"/v1/models/{model_name}/reference").status_code == 403


def boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    """x1, y1, x2, y2 of small, medium and large objects in a 640 × 480 frame."""
    xy = rng.uniform(0, 400, size=(n, 2))
    wh = rng.choice([12.0, 50.0, 150.0], size=(n, 1)) * rng.uniform(0.6, 1.4, size=(n, 2))
    return np.hstack([xy, xy + wh])


def shelf_images(
    rng: np.random.Generator, model: str, hour: datetime, camera: str, n: int, first_id: int, *, objects: float
) -> tuple[list[dict], list[dict]]:
    """A detector that finds 85 % of the objects (scores ~ Beta(5, 2)) and adds about one false
    box per image (scores ~ Beta(2, 4)); ``objects`` is the mean number of objects per image."""
    preds, truth = [], []
    for i in range(n):
        pid = f"{model}-{first_id + i}"
        n_gt = int(rng.poisson(objects))
        gb, gc = boxes(rng, n_gt), rng.integers(0, 3, n_gt)
        found = rng.random(n_gt) < 0.85
        n_fp = int(rng.poisson(1.0))
        db = np.vstack([gb[found] + rng.normal(0, 2, (int(found.sum()), 4)), boxes(rng, n_fp)])
        db[:, 2:] = np.maximum(db[:, 2:], db[:, :2] + 1)
        dc = np.concatenate([gc[found], rng.integers(0, 3, n_fp)])
        ds = np.concatenate([rng.beta(5, 2, int(found.sum())), rng.beta(2, 4, n_fp)])
        ts = hour + timedelta(seconds=float(rng.uniform(0, 3599)))
        preds.append({"prediction_id": pid, "model": model, "model_version": "v1", "timestamp": ts.isoformat(),
                      "cohort": {"camera": camera}, "boxes": db.astype(np.float32).tolist(), "box_classes": dc.tolist(),
                      "box_scores": ds.astype(np.float32).tolist()})  # fmt: skip
        truth.append(
            {"prediction_id": pid, "model": model, "boxes": gb.astype(np.float32).tolist(), "box_classes": gc.tolist()}
        )
    return preds, truth


def test_detection_features_drift_when_a_camera_sees_crowds(make_api, model_name):
    """cam-b starts seeing crowded shelves: boxes per image moves, cam-a's does not; the precision
    estimate from calibrated box scores follows cam-a's realised precision."""
    clock = Clock(NOW)
    api = make_api(clock=clock, **{**SETTINGS, "drift_reference_size": 600, "drift_min_labels": 100})
    rng = np.random.default_rng(5)
    preds, truth = [], []
    for hour in REFERENCE_HOURS:
        for camera in ("cam-a", "cam-b"):
            p, g = shelf_images(rng, model_name, hour, camera, 150, len(preds), objects=1.5)
            preds += p
            truth += g
    for camera, objects in (("cam-a", 1.5), ("cam-b", 4.0)):
        p, g = shelf_images(rng, model_name, LATER_HOURS[-1], camera, 300, len(preds), objects=objects)
        preds += p
        truth += g
    with api.admin() as c:
        c.put(
            f"/v1/models/{model_name}",
            json={"task": "detection", "classes": ["can", "box", "bottle"], "operating_threshold": 0.4},
        )
        post(c, preds, truth)
        assert run(api, clock, model_name)["drift"].startswith("3 windows scored")

        hour = iso(LATER_HOURS[-1])  # the latest completed hour: also on /metrics
        detected = series(c, model_name, "drift_detected", version="v1")
        assert detected[(hour, "camera:cam-b", "wasserstein:boxes_per_image")] == 1.0
        assert detected[(hour, "camera:cam-a", "wasserstein:boxes_per_image")] == 0.0
        assert {cls for start, cohort, cls in detected if (start, cohort) == (hour, "camera:cam-a")} == {
            "wasserstein:boxes_per_image", "ks:box_area", "ks:confidence", "chi_square:class_mix", "psi:class_mix",
        }  # fmt: skip
        estimated = series(c, model_name, "estimated_precision_at_threshold", version="v1")
        realised = series(c, model_name, "precision_at_threshold", version="v1")
        key = (hour, "camera:cam-a", "")
        assert estimated[key] == pytest.approx(realised[key], abs=0.05)
        scraped = scrape(c)
    for camera, want in (("cam-a", 0.0), ("cam-b", 1.0)):
        assert (
            drift_series(scraped, "cvmon_drift_detected", model_name, camera, "wasserstein", "boxes_per_image") == want
        )
