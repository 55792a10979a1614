"""POST /v1/ground-truth: before, after and twice; newest revision wins; nothing is dropped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import sqlalchemy as sa

from monitor.server.store import tables as t
from tests.server.records import CLASSES, cls_record, det_record, register


def labels(db, model: str) -> dict[str, int]:
    g = t.ground_truth
    with db.engine.connect() as conn:
        return dict(conn.execute(sa.select(g.c.prediction_id, g.c.label).where(g.c.model == model)).all())


def pending(db, model: str) -> dict[str, int]:
    g = t.ground_truth_pending
    with db.engine.connect() as conn:
        return dict(conn.execute(sa.select(g.c.prediction_id, g.c.label).where(g.c.model == model)).all())


def gt(model: str, pid: str, label: str, ts: str | None = None) -> dict:
    rec = {"prediction_id": pid, "model": model, "label": label}
    if ts:
        rec["timestamp"] = ts
    return rec


def test_ground_truth_after_prediction(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        c.post("/v1/predictions", json={"records": [cls_record(model_name, "a"), cls_record(model_name, "b")]})
        r = c.post("/v1/ground-truth", json={"records": [gt(model_name, "a", "dent")]})
        info = c.get(f"/v1/models/{model_name}").json()
    assert r.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert labels(api.db, model_name) == {"a": CLASSES.index("dent")}
    assert info["counts"] == {"predictions": 2, "ground_truth": 1, "labelled": 1}
    assert info["versions"][0]["labelled"] == 1


def test_ground_truth_before_prediction_waits_and_joins(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        assert c.post("/v1/ground-truth", json={"records": [gt(model_name, "early", "ok")]}).json()["accepted"] == 1
        assert pending(api.db, model_name) == {"early": CLASSES.index("ok")}
        before = c.get(f"/v1/models/{model_name}").json()["counts"]
        c.post("/v1/predictions", json={"records": [cls_record(model_name, "early")]})
        after = c.get(f"/v1/models/{model_name}").json()["counts"]
    assert before == {"predictions": 0, "ground_truth": 1, "labelled": 0}
    assert after == {"predictions": 1, "ground_truth": 1, "labelled": 1}
    assert pending(api.db, model_name) == {}
    assert labels(api.db, model_name) == {"early": CLASSES.index("ok")}


def test_newest_revision_wins_and_retries_are_duplicates(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        c.post("/v1/predictions", json={"records": [cls_record(model_name, "p")]})
        first = c.post("/v1/ground-truth", json={"records": [gt(model_name, "p", "dent", "2026-11-21T09:00:00Z")]}).json()
        retry = c.post("/v1/ground-truth", json={"records": [gt(model_name, "p", "dent", "2026-11-21T09:00:00Z")]}).json()
        revised = c.post("/v1/ground-truth", json={"records": [gt(model_name, "p", "scratch", "2026-11-22T09:00:00Z")]}).json()
        stale = c.post("/v1/ground-truth", json={"records": [gt(model_name, "p", "ok", "2026-11-21T12:00:00Z")]}).json()
        counts = c.get(f"/v1/models/{model_name}").json()["counts"]
    assert first["accepted"] == 1
    assert retry == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert revised == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert stale == {"accepted": 0, "duplicates": 1, "rejected": []}
    assert labels(api.db, model_name) == {"p": CLASSES.index("scratch")}
    assert counts == {"predictions": 1, "ground_truth": 1, "labelled": 1}


def test_revisions_inside_one_batch_apply_oldest_first(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        c.post("/v1/predictions", json={"records": [cls_record(model_name, "p")]})
        body = c.post("/v1/ground-truth", json={"records": [
            gt(model_name, "p", "ok", "2026-11-23T00:00:00Z"),
            gt(model_name, "p", "dent", "2026-11-21T00:00:00Z"),
        ]}).json()  # fmt: skip
    assert body["accepted"] == 2
    assert labels(api.db, model_name) == {"p": CLASSES.index("ok")}


def test_revision_of_pending_ground_truth(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        c.post("/v1/ground-truth", json={"records": [gt(model_name, "q", "dent", "2026-11-21T00:00:00Z")]})
        c.post("/v1/ground-truth", json={"records": [gt(model_name, "q", "ok", "2026-11-22T00:00:00Z")]})
        c.post("/v1/predictions", json={"records": [cls_record(model_name, "q")]})
    assert labels(api.db, model_name) == {"q": CLASSES.index("ok")}


def test_weeks_late_ground_truth_lands_in_the_prediction_partition(api, model_name):
    # three weeks back from today (a fixed date fell out of the 90-day retention, and was refused)
    day = (datetime.now(UTC) - timedelta(weeks=3)).date()
    with api.admin() as c:
        register(c, model_name)
        c.post("/v1/predictions", json={"records": [cls_record(model_name, "old", timestamp=f"{day.isoformat()}T08:30:00Z")]})
        assert c.post("/v1/ground-truth", json={"records": [gt(model_name, "old", "dent")]}).json()["accepted"] == 1
    g = t.ground_truth
    with api.db.engine.connect() as conn:
        row = conn.execute(sa.select(g).where(g.c.model == model_name)).one()
        hours = conn.execute(sa.select(t.dirty_hours.c.hour_start).where(t.dirty_hours.c.model == model_name)).scalars().all()
        if api.db.is_pg:
            part = conn.execute(sa.text("SELECT tableoid::regclass::text FROM ground_truth WHERE model = :m"), {"m": model_name}).scalar()
            assert part == f"ground_truth_p{day:%Y%m%d}"
    assert row.prediction_ts.isoformat().startswith(f"{day.isoformat()}T08:30")
    assert any(h.isoformat().startswith(f"{day.isoformat()}T08:00") for h in hours)


def test_detection_ground_truth_with_crowd(api, model_name):
    with api.admin() as c:
        register(c, model_name, task="detection")
        c.post("/v1/predictions", json={"records": [det_record(model_name, "img")]})
        body = c.post("/v1/ground-truth", json={"records": [{
            "prediction_id": "img", "model": model_name,
            "boxes": [[12, 9, 48, 61], [100, 100, 200, 200]], "box_classes": ["dent", "scratch"], "iscrowd": [0, 1],
        }]}).json()  # fmt: skip
        bad = c.post("/v1/ground-truth", json={"records": [{"prediction_id": "img", "model": model_name, "label": "dent"}]})
    assert body["accepted"] == 1
    assert bad.status_code == 422 and "label is for classification" in bad.json()["rejected"][0]["error"]
    g = t.ground_truth
    with api.db.engine.connect() as conn:
        row = conn.execute(sa.select(g).where(g.c.model == model_name)).one()
    np.testing.assert_array_equal(np.frombuffer(row.iscrowd, "u1"), [0, 1])
    np.testing.assert_array_equal(np.frombuffer(row.boxes, "<f4").reshape(-1, 4)[1], [100, 100, 200, 200])


def test_ground_truth_rejections(api, model_name):
    with api.admin() as c:
        register(c, model_name)
        body = c.post("/v1/ground-truth", json={"records": [
            gt(model_name, "a", "dent"),
            {"prediction_id": "b", "model": model_name},
            gt(model_name, "c", "rust"),
            gt("unknown-model", "d", "dent"),
        ]}).json()  # fmt: skip
    assert body["accepted"] == 1
    reasons = {r["index"]: r["error"] for r in body["rejected"]}
    assert "label is required" in reasons[1]
    assert "not a class" in reasons[2]
    assert "unknown model" in reasons[3]
