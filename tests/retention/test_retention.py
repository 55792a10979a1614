"""Retention on PostgreSQL and SQLite: what is older than its setting goes, the rest stays.

On PostgreSQL the big tables lose whole daily partitions (DROP TABLE: the statements are
recorded and no DELETE touches them); on SQLite rows are deleted by time. Each database gets
one of its own: dropping partitions of the shared test database would take other tests' days.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa

from monitor.errors import ConfigError
from monitor.server.app import create_app
from monitor.server.jobs import maintenance, run_once
from monitor.server.jobs.retention import apply_retention
from monitor.server.services.ingest import CohortPolicy, ingest_ground_truth, ingest_predictions
from monitor.server.services.models import register_model
from monitor.server.settings import Retention, Settings, load_retention
from monitor.server.store import migrate
from monitor.server.store import tables as t
from monitor.server.store.engine import make_engine, write_transaction
from monitor.server.store.partitions import PartitionManager
from monitor.wire import encode_array
from testkit.servers import ThreadServer
from tests.conftest import Database
from tests.faults.servers import create_key, scratch_database

pytestmark = pytest.mark.slow  # retention over generated days on both databases

NOW = datetime(2026, 11, 20, 12, 30, tzinfo=UTC)
DAY = 86400
#: Ages of the data written, in days before NOW.
AGES = (120, 95, 60, 10, 3, 1)
RETENTION = Retention(embeddings=7 * DAY, predictions=30 * DAY, eval_states=37 * DAY, metric_points=90 * DAY)
MODEL = "retention-model"


@pytest.fixture(params=["postgresql", "sqlite"])
def own_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "postgresql":
        with scratch_database("cvmon_retention") as url:
            engine = make_engine(url)
            try:
                yield Database("postgresql", url, engine)
            finally:
                engine.dispose()
        return
    url = f"sqlite:///{tmp_path / 'cvmon.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    try:
        yield Database("sqlite", url, engine)
    finally:
        engine.dispose()


def _fill(db: Database) -> Settings:
    """Predictions with embeddings and labels at each age, labels that never met a prediction,
    and the evaluation of all of it."""
    settings = Settings(database_url=db.url, scheduler=False, retention=RETENTION)
    engine = db.engine
    with write_transaction(engine) as conn:
        register_model(conn, MODEL, "classification", ["a", "b"], 0.5, now=NOW - timedelta(days=200))
    parts = PartitionManager(engine)
    for age in AGES:
        ts = NOW - timedelta(days=age)
        preds = [{"prediction_id": f"d{age}-{i}", "model": MODEL, "model_version": "v1", "timestamp": ts.isoformat(),
                  "probabilities": [0.7, 0.3], "embedding": encode_array(np.ones(8), "float16")} for i in range(5)]  # fmt: skip
        assert ingest_predictions(engine, preds, now=ts, partitions=parts, policy=CohortPolicy(settings)).accepted == 5
        labels = [{"prediction_id": f"d{age}-{i}", "model": MODEL, "label": "a"} for i in range(3)]
        labels.append({"prediction_id": f"never-{age}", "model": MODEL, "label": "b"})  # waits for a prediction
        assert ingest_ground_truth(engine, labels, now=ts).accepted == 4
    assert [o.status for o in run_once(engine, settings, clock=lambda: NOW, models=[MODEL], jobs=["evaluate"])] == [
        "ok"
    ]
    return settings


def _ages(db: Database, table: sa.Table, column: str) -> set[int]:
    with db.engine.connect() as conn:
        stamps = conn.execute(sa.select(table.c[column]).where(table.c.model == MODEL)).scalars().all()
    return {round((NOW - ts).total_seconds() / DAY) for ts in stamps}


def _pending(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return set(conn.execute(sa.select(t.ground_truth_pending.c.prediction_id)).scalars())


def test_expired_data_goes_and_the_rest_stays(own_db):
    db = own_db
    _fill(db)
    assert _ages(db, t.predictions, "ts") == set(AGES)
    statements: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(args[2]))
    result = apply_retention(db.engine, RETENTION, now=NOW)

    assert _ages(db, t.predictions, "ts") == {10, 3, 1}
    assert _ages(db, t.ground_truth, "prediction_ts") == {10, 3, 1}
    assert _ages(db, t.embeddings, "ts") == {3, 1}  # raw embeddings are kept shorter
    assert _pending(db) == {"never-10", "never-3", "never-1"}
    # the annotations behind the labels go by when they were received, as waiting labels do
    assert _ages(db, t.label_annotations, "received_at") == {10, 3, 1}
    assert {round((NOW - h).total_seconds() / DAY) for h in _hours(db, t.eval_states)} == {10, 3, 1}
    with db.engine.connect() as conn:
        ends = (
            conn.execute(sa.select(t.metric_points.c.window_end).where(t.metric_points.c.model == MODEL))
            .scalars()
            .all()
        )
    assert ends and min(ends) >= NOW - timedelta(days=90)
    assert any(e < NOW - timedelta(days=37) for e in ends)  # history outlives the hour states
    big = ("predictions", "embeddings", "ground_truth")
    if db.is_pg:
        dropped = {name.rsplit("_p", 1)[0] for name in result.dropped_partitions}
        assert dropped == set(big)
        days = {table: PartitionManager(db.engine).existing_days(table) for table in big}
        assert min(days["predictions"]) >= (NOW - timedelta(days=30)).date() - timedelta(days=1)
        assert not [
            s
            for s in statements
            if s.lstrip().upper().startswith("DELETE") and any(f"FROM {b} " in s + " " for b in big)
        ]
        assert any(s.startswith("DROP TABLE") for s in statements)
    else:
        assert result.deleted_rows["predictions"] == 15 and result.dropped_partitions == []


def test_identities_go_with_their_predictions_and_still_hold_for_the_rest(own_db):
    """One prediction id is one row after retention too: the identities of deleted predictions go
    (the table does not grow forever), the others still make a resend a duplicate."""
    db = own_db
    settings = _fill(db)
    apply_retention(db.engine, RETENTION, now=NOW)
    with db.engine.connect() as conn:
        kept = set(conn.execute(sa.select(t.predictions.c.prediction_id).where(t.predictions.c.model == MODEL)).scalars())
        ids = set(conn.execute(sa.select(t.prediction_ids.c.prediction_id).where(t.prediction_ids.c.model == MODEL)).scalars())
    assert kept == ids == {f"d{age}-{i}" for age in (10, 3, 1) for i in range(5)}
    cutoff = RETENTION.cutoff("predictions", NOW)
    resend = [
        {"prediction_id": "d3-0", "model": MODEL, "model_version": "v1", "timestamp": NOW.isoformat(), "probabilities": [0.5, 0.5]},
        {"prediction_id": "d60-0", "model": MODEL, "model_version": "v1", "timestamp": (NOW - timedelta(days=60)).isoformat(),
         "probabilities": [0.5, 0.5]},
    ]  # fmt: skip
    result = ingest_predictions(
        db.engine, resend, now=NOW, partitions=PartitionManager(db.engine), policy=CohortPolicy(settings), oldest=cutoff
    )
    assert (result.accepted, result.duplicates) == (0, 1)
    assert result.rejected[0][0] == 1 and "retention" in result.rejected[0][1]


def _hours(db: Database, table: sa.Table) -> list[datetime]:
    with db.engine.connect() as conn:
        return list(conn.execute(sa.select(table.c.hour_start).where(table.c.model == MODEL)).scalars())


def test_retention_is_idempotent_and_ingest_goes_on_after_it(own_db):
    db = own_db
    settings = _fill(db)
    apply_retention(db.engine, RETENTION, now=NOW)
    again = apply_retention(db.engine, RETENTION, now=NOW)
    assert again.dropped_partitions == [] and not any(again.deleted_rows.values())
    key = create_key(db.url, ["ingest", "read"])
    with ThreadServer(create_app(settings, clock=lambda: NOW)) as server:
        recs = [
            {"prediction_id": f"new-{age}", "model": MODEL, "model_version": "v1",
             "timestamp": (NOW - timedelta(days=age)).isoformat(), "probabilities": [0.5, 0.5]}
            for age in (0, 29, 31, 95)
        ]  # fmt: skip
        body = httpx.post(
            f"{server.url}/v1/predictions", json={"records": recs}, headers={"Authorization": f"Bearer {key}"}
        ).json()
    assert body["accepted"] == 2
    assert [r["index"] for r in body["rejected"]] == [2, 3]
    assert "older than the predictions retention" in body["rejected"][0]["error"]


def test_maintenance_applies_the_configured_retention(own_db):
    db = own_db
    settings = _fill(db)
    maintenance(db.engine, settings, clock=lambda: NOW)
    assert _ages(db, t.predictions, "ts") == {10, 3, 1}
    forever = settings.with_(retention=Retention(None, None, None, None))
    maintenance(db.engine, forever, clock=lambda: NOW + timedelta(days=400))
    assert _ages(db, t.predictions, "ts") == {10, 3, 1}  # "forever" deletes nothing, however late


def test_a_second_process_skips_while_one_applies_retention(own_db):
    db = own_db
    if not db.is_pg:
        pytest.skip("the cross-process lock is PostgreSQL's; SQLite runs one process")
    from monitor.server.jobs.locks import job_lock

    holder = make_engine(db.url)
    try:
        with job_lock(holder, "retention", "") as held:
            assert held
            assert apply_retention(db.engine, RETENTION, now=NOW).skipped
        assert not apply_retention(db.engine, RETENTION, now=NOW).skipped
    finally:
        holder.dispose()


def test_a_partition_drop_does_not_wait_behind_a_long_reader(own_db):
    db = own_db
    if not db.is_pg:
        pytest.skip("partitions are PostgreSQL's")
    _fill(db)
    reader = make_engine(db.url)
    release = threading.Event()
    reading = threading.Event()

    def long_read() -> None:
        with reader.connect() as conn, conn.begin():
            conn.execute(sa.text("SELECT count(*) FROM predictions"))  # holds ACCESS SHARE until commit
            reading.set()
            release.wait(30)

    thread = threading.Thread(target=long_read)
    thread.start()
    try:
        assert reading.wait(30)
        parts = PartitionManager(db.engine)
        started = datetime.now(UTC)
        assert parts.drop_before("predictions", NOW - timedelta(days=30), lock_timeout_ms=300) == []
        assert datetime.now(UTC) - started < timedelta(seconds=10)
    finally:
        release.set()
        thread.join()
        reader.dispose()
    assert len(PartitionManager(db.engine).drop_before("predictions", NOW - timedelta(days=30))) == 3


# --------------------------------------------------------------------------------------------
# settings


def test_retention_settings_from_yaml_and_environment(tmp_path):
    (tmp_path / "cvmon.yaml").write_text(
        "retention:\n  embeddings: 3d\n  predictions: 60d\n  eval_states: 70d\n  metric_points: forever\n"
    )
    settings = Settings.load({"CVMON_CONFIG": str(tmp_path / "cvmon.yaml"), "CVMON_RETENTION_EMBEDDINGS": "36h"})
    assert settings.retention == Retention(
        embeddings=36 * 3600, predictions=60 * DAY, eval_states=70 * DAY, metric_points=None
    )
    assert settings.retention.cutoff("metric_points", NOW) is None
    assert settings.retention.cutoff("predictions", NOW) == NOW - timedelta(days=60)
    assert Settings.load({}).retention == Retention()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        pytest.param({"embeddings": "100d"}, "embeddings must not be longer", id="embeddings-outlive-predictions"),
        pytest.param(
            {"eval_states": "90d"}, "at least retention.predictions plus the longest window", id="states-too-short"
        ),
        pytest.param({"metric_points": "30d"}, "metric_points must not be shorter", id="history-too-short"),
        pytest.param({"embeddings": "2h"}, "at least 1d", id="under-a-day"),
        pytest.param({"predictions": "ninety days"}, "must look like", id="not-a-duration"),
        pytest.param({"raw": "7d"}, "unknown key 'raw'", id="unknown-key"),
    ],
)
def test_bad_retention_settings_are_explained(section, message):
    with pytest.raises(ConfigError, match=message):
        Settings(retention=load_retention(section, {})).validate()
