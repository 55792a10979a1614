"""The evaluate job keeps up while ingest writes into the hour it evaluates, and loses nothing.

Every ingest batch marks its hour dirty. When the evaluate job consumed that mark inside its
REPEATABLE READ snapshot, any batch committed meanwhile made the transaction fail; under steady
traffic (bench/load.py: 70% of the runs) the current hour was never evaluated while traffic
flowed. Here a writer sends a batch into the current hour every few milliseconds while evaluate
runs again and again: every run must succeed, and once the writer stops, one more run must count
every row.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from monitor.server.jobs import run_once
from monitor.server.services.ingest import CohortPolicy, ingest_predictions
from monitor.server.services.models import register_model
from monitor.server.settings import Settings
from monitor.server.store import tables as t
from monitor.server.store.engine import write_transaction
from monitor.server.store.partitions import PartitionManager

pytestmark = pytest.mark.slow  # real servers, processes or long trials: `make test` runs it, `make test-fast` does not


def test_evaluate_succeeds_while_ingest_keeps_marking_its_hour(db, model_name):
    now = datetime.now(UTC).replace(minute=30)
    settings = Settings(database_url=db.url, scheduler=False, windows=("1h",))
    with write_transaction(db.engine) as conn:
        register_model(conn, model_name, "classification", ["a", "b"], 0.5, now=now)
    stop = threading.Event()
    written = [0]
    parts = PartitionManager(db.engine)

    def writer() -> None:
        i = 0
        while not stop.is_set():
            batch = [{"prediction_id": f"p{i}-{k}", "model": model_name, "model_version": "v1", "timestamp": now.isoformat(),
                      "probabilities": [0.6, 0.4]} for k in range(20)]  # fmt: skip
            written[0] += ingest_predictions(
                db.engine, batch, now=now, partitions=parts, policy=CohortPolicy(settings)
            ).accepted
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        outcomes = []
        # at least 8 runs, and until the writer got 10 batches in between them (a fast run
        # leaves it less time: counting runs alone made this depend on the machine's speed)
        while len(outcomes) < 8 or (written[0] <= 200 and len(outcomes) < 1000):
            outcomes += run_once(db.engine, settings, clock=lambda: now, models=[model_name], jobs=["evaluate"])
    finally:
        stop.set()
        thread.join()
    assert [o.status for o in outcomes] == ["ok"] * len(outcomes), [o.detail for o in outcomes if o.status != "ok"]
    assert written[0] > 200
    assert [
        o.status for o in run_once(db.engine, settings, clock=lambda: now, models=[model_name], jobs=["evaluate"])
    ] == ["ok"]
    es = t.eval_states.c
    with db.engine.connect() as conn:
        evaluated = conn.execute(
            sa.select(es.predictions).where(es.model == model_name, es.cohort_key == "", es.version == "v1")
        ).scalar_one()
        marks = conn.execute(
            sa.select(sa.func.count()).select_from(t.dirty_hours).where(t.dirty_hours.c.model == model_name)
        ).scalar_one()
    assert evaluated == written[0]
    assert marks == 0


@pytest.mark.parametrize("db", ["postgresql", "sqlite"], indirect=True)
def test_every_mark_of_an_hour_is_later_than_the_one_before_even_with_a_stopped_clock(db, model_name):
    from monitor.server.store.writes import mark_dirty

    hour = datetime(2026, 11, 20, 10, tzinfo=UTC)
    frozen = datetime(2026, 11, 20, 10, 30, tzinfo=UTC)
    seen = []
    for _ in range(3):
        with write_transaction(db.engine) as conn:
            mark_dirty(conn, {(model_name, hour)}, frozen, pg=db.is_pg)
            seen.append(
                conn.execute(
                    sa.select(t.dirty_hours.c.marked_at).where(t.dirty_hours.c.model == model_name)
                ).scalar_one()
            )
    assert seen[0] == frozen and seen[0] < seen[1] < seen[2]
