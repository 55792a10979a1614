"""The evaluate job's cache of decoded hour states: what it serves equals what is stored, and a
row written by anyone else makes the hour a miss."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import sqlalchemy as sa

from monitor.errors import ConfigError
from monitor.metrics import classification_state
from monitor.metrics._quantiles import QuantileSketch
from monitor.server.jobs import Worker
from monitor.server.services.evaluation import load_hours, row_versions
from monitor.server.services.state_cache import HourStateCache, state_bytes
from monitor.server.services.states import SliceKey, SliceState
from monitor.server.settings import Settings
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction

from .test_evaluate_e2e import HOURS, NOW, assert_api_is_the_engine, evaluated, gt, synth

pytestmark = pytest.mark.slow  # the evaluation pipeline end to end on both databases

WEEK_BEFORE = NOW - timedelta(days=7)
WHOLE = SliceKey("v1", "", "")


def _load_hours(engine, model, start, end, cache=None):
    with engine.connect() as conn:
        return load_hours(conn, model, start, end, cache)


def assert_same_states(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for hour in want:
        assert got[hour].keys() == want[hour].keys()
        for key in want[hour]:
            assert got[hour][key].blobs() == want[hour][key].blobs(), (hour, key)


def test_the_cache_serves_what_is_stored_after_late_label_runs(make_api, model_name):
    """After a full run and runs that add parts (and one that folds them), every hour is served
    from memory, and equals the stored parts decoded and merged anew, byte for byte."""
    api = make_api(cohort_keys=("camera",), clock=lambda: NOW)
    engine = api.db.engine
    worker = Worker(engine, api.settings, clock=lambda: NOW)
    records, truth = synth(model_name, 300, seed=11)
    ids = [r["prediction_id"] for r in records]
    labelled = set(ids[:100])
    with api.admin() as c:
        evaluated(api, c, model_name, records, truth, labelled, worker)
        for batch in range(10):  # past MAX_PARTS: the parts of every slice fold once
            late = ids[100 + 15 * batch : 115 + 15 * batch]
            c.post("/v1/ground-truth", json={"records": [gt(model_name, p, truth[p]) for p in late]})
            labelled |= set(late)
            worker.run_once(models=[model_name], jobs=["evaluate"])
        assert_api_is_the_engine(c, model_name, records, truth, labelled, hour=HOURS[2], camera="cam-b")
    cache = worker.state_cache
    assert cache is not None
    with engine.connect() as conn:
        stored = row_versions(conn, model_name, t.eval_states.c.hour_start >= WEEK_BEFORE)
    assert set(stored) == set(HOURS)
    # every hour is held under the rows stored now: the runs put what they wrote
    assert all(cache.get(model_name, hour, versions) is not None for hour, versions in stored.items())
    cached = _load_hours(engine, model_name, WEEK_BEFORE, NOW + timedelta(hours=1), cache)
    assert_same_states(cached, _load_hours(engine, model_name, WEEK_BEFORE, NOW + timedelta(hours=1)))


def test_a_row_written_elsewhere_is_read_again(make_api, model_name):
    """Another process's write (a new part, a rewritten row, a deleted hour) does not match the
    cached versions: the hour is read from the database."""
    api = make_api(cohort_keys=("camera",), clock=lambda: NOW)
    engine = api.db.engine
    worker = Worker(engine, api.settings, clock=lambda: NOW)
    records, truth = synth(model_name, 200, seed=12)
    with api.admin() as c:
        evaluated(api, c, model_name, records, truth, {r["prediction_id"] for r in records[:120]}, worker)
    cache = worker.state_cache
    span = (WEEK_BEFORE, NOW + timedelta(hours=1))
    before = _load_hours(engine, model_name, *span, cache)
    es = t.eval_states.c
    later = datetime.now(UTC) + timedelta(seconds=1)
    with write_transaction(engine) as conn:
        # "another process" recomputed HOURS[0] (same part, new values), added a part to HOURS[1]
        # and retention deleted HOURS[2]
        conn.execute(
            sa.update(t.eval_states)
            .where(es.model == model_name, es.hour_start == HOURS[0], es.cohort_key == "")
            .values(predictions=es.predictions + 1000, computed_at=later)
        )
        row = conn.execute(sa.select(t.eval_states).where(es.model == model_name, es.hour_start == HOURS[1]).limit(1)).one()
        conn.execute(sa.insert(t.eval_states).values({**row._asdict(), "part": 1, "computed_at": later}))
        conn.execute(sa.delete(t.eval_states).where(es.model == model_name, es.hour_start == HOURS[2]))
    after = _load_hours(engine, model_name, *span, cache)
    assert_same_states(after, _load_hours(engine, model_name, *span))
    assert HOURS[2] not in after
    assert {k: s.predictions - 1000 for k, s in after[HOURS[0]].items() if k.cohort_key == ""} == {
        k: s.predictions for k, s in before[HOURS[0]].items() if k.cohort_key == ""
    }
    key = SliceKey(row.version, row.cohort_key, row.cohort_value)
    assert after[HOURS[1]][key].predictions == 2 * before[HOURS[1]][key].predictions
    # the hours nobody touched are still the cached objects
    assert after[HOURS[3]] is before[HOURS[3]] and after[HOURS[4]] is before[HOURS[4]]


def test_the_cache_evicts_least_recently_used_beyond_its_size():
    rng = np.random.default_rng(0)
    states = {
        WHOLE: SliceState(
            predictions=50, errors=0, labelled=50, calibration=None, detection=None,
            classification=classification_state(rng.integers(4, size=50), predictions=rng.integers(4, size=50), num_classes=4),
            latency=QuantileSketch.of(rng.gamma(2.0, 6.0, size=50)), label_latency=QuantileSketch.empty(),
        )
    }  # fmt: skip
    size = state_bytes(states[WHOLE])
    assert size > 0
    versions = [(WHOLE, 0, NOW)]
    cache = HourStateCache(max_bytes=3 * size)
    for hour in HOURS[:3]:
        cache.put("m", hour, versions, states)
    assert cache.get("m", HOURS[0], frozenset(versions)) is states  # now the most recently used
    cache.put("m", HOURS[3], versions, states)
    assert cache.get("m", HOURS[1], frozenset(versions)) is None  # the least recently used went
    assert all(cache.get("m", h, frozenset(versions)) is states for h in (HOURS[0], HOURS[2], HOURS[3]))
    assert cache.bytes == 3 * size
    # other versions of the rows are a miss; a put replaces the entry
    assert cache.get("m", HOURS[0], frozenset([(WHOLE, 1, NOW)])) is None
    cache.put("m", HOURS[0], [(WHOLE, 0, NOW), (WHOLE, 1, NOW)], states)
    assert cache.get("m", HOURS[0], frozenset(versions)) is None
    assert cache.bytes == 3 * size
    # an entry larger than the whole cache is not kept
    small = HourStateCache(max_bytes=size - 1)
    small.put("m", HOURS[0], versions, states)
    assert small.get("m", HOURS[0], frozenset(versions)) is None and small.bytes == 0


def test_size_zero_turns_the_cache_off_and_each_worker_owns_its_cache(tmp_path):
    from monitor.server.store.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    clock = lambda: NOW  # noqa: E731
    assert Worker(engine, Settings(eval_state_cache_mb=0), clock=clock).state_cache is None
    one, two = (Worker(engine, Settings(eval_state_cache_mb=1), clock=clock) for _ in range(2))
    assert one.state_cache is not None and one.state_cache is not two.state_cache
    assert one.state_cache.max_bytes == 1 << 20
    with pytest.raises(ConfigError, match="eval_state_cache_mb"):
        Settings(eval_state_cache_mb=-1).validate()
