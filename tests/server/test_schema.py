"""The schema comes only from the real Alembic migrations; servers refuse an out-of-date one."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa

from monitor.errors import SchemaOutOfDate
from monitor.server.services.ingest import write_predictions
from monitor.server.settings import Settings
from monitor.server.store import migrate
from monitor.server.store.engine import make_engine
from monitor.server.store.partitions import PartitionManager
from monitor.wire import Prediction


def test_migrations_from_empty_match_the_code(db):
    """`alembic check`: the migrated database and the SQLAlchemy tables agree."""
    assert migrate.current_revision(db.engine) == migrate.head_revision()
    migrate.check(db.engine)
    names = set(sa.inspect(db.engine).get_table_names())
    assert {"models", "model_versions", "predictions", "embeddings", "ground_truth", "ground_truth_pending", "api_keys"} <= names


def test_upgrade_is_idempotent(db):
    migrate.upgrade(db.engine)
    migrate.upgrade(db.engine)
    assert migrate.current_revision(db.engine) == migrate.head_revision()


@pytest.mark.parametrize("kind", ["postgresql", "sqlite"])
def test_every_migration_downgrades_and_upgrades_again(kind, tmp_path, pg_database):
    """On a database of its own (a downgrade to nothing would empty the session's): head -> each
    revision down to none -> head again, and the result still matches the code."""
    import psycopg
    from alembic import command
    from alembic.script import ScriptDirectory

    from tests.conftest import _pg_admin_url

    if kind == "postgresql":
        if pg_database is None:
            pytest.skip("PostgreSQL unreachable (allowed outside CI only; see the banner)")
        name = f"cvmon_migrations_{zlib.crc32(str(tmp_path).encode()):08x}"
        with psycopg.connect(_pg_admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = sa.engine.make_url(pg_database).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{tmp_path / 'migrations.db'}"
    engine = make_engine(url)
    try:
        migrate.upgrade(engine)
        revisions = [r.revision for r in ScriptDirectory.from_config(migrate.alembic_config()).walk_revisions()]
        for below in [*revisions[1:], "base"]:  # newest first
            with engine.begin() as conn:
                command.downgrade(migrate.alembic_config(conn), below)
            assert migrate.current_revision(engine) == (None if below == "base" else below)
        migrate.upgrade(engine)
        migrate.check(engine)
    finally:
        engine.dispose()
        if kind == "postgresql":
            with psycopg.connect(_pg_admin_url(), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_empty_database_is_refused_with_the_fix(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(SchemaOutOfDate, match="cvmon db upgrade"):
        migrate.verify_schema(engine)


def test_server_refuses_to_start_on_an_old_schema(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    migrate.upgrade(engine)
    with engine.begin() as conn:  # pretend the database is from an older cvmon
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0000'"))
    proc = subprocess.run(
        [sys.executable, "-m", "monitor.server.cli", "serve", "--port", "1"],
        env={"CVMON_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert "at revision 0000" in proc.stderr and "Run: cvmon db upgrade" in proc.stderr


def test_app_startup_refuses_an_empty_database(tmp_path):
    from fastapi import FastAPI

    from monitor.server.app import create_app

    app: FastAPI = create_app(Settings(database_url=f"sqlite:///{tmp_path / 'x.db'}"))

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    import asyncio

    with pytest.raises(SchemaOutOfDate):
        asyncio.run(start())


def test_partitions_are_created_ahead_and_on_demand(pg_engine):
    """Daily partitions exist on PostgreSQL only; SQLite tables are not partitioned."""
    manager = PartitionManager(pg_engine)
    manager.ensure_ahead(datetime(2031, 3, 10, 12, tzinfo=UTC), days_ahead=3)
    days = manager.existing_days("predictions")
    assert {date(2031, 3, d) for d in range(9, 14)} <= set(days)
    for table in ("embeddings", "ground_truth"):
        assert date(2031, 3, 13) in manager.existing_days(table)
    # a backfill far in the past gets its partition from the writer
    manager.ensure_timestamps([datetime(2019, 5, 4, 23, 59, tzinfo=UTC)])
    assert date(2019, 5, 4) in manager.existing_days("predictions")
    with pg_engine.connect() as conn:
        bound = conn.execute(sa.text(
            "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c WHERE c.relname = 'predictions_p20190504'"
        )).scalar()  # fmt: skip
    assert "2019-05-04 00:00:00+00" in bound and "2019-05-05 00:00:00+00" in bound


def test_a_day_being_filled_is_analysed_so_id_lookups_probe_the_key(pg_engine, model_name):
    """The duplicate check looks up a batch's ids in its day's partition; planned on a partition
    never analysed, PostgreSQL scanned the (model, ts) index and compared every row with every id."""
    day = datetime(2033, 1, 1, tzinfo=UTC) + timedelta(days=zlib.crc32(model_name.encode()) % 3000)
    partition = f"predictions_p{day:%Y%m%d}"
    preds = [
        Prediction(prediction_id=f"p{i}", model=model_name, model_version="v1", ts=day + timedelta(seconds=20 * i),
                   ts_defaulted=False, status=0, predicted_class=0, confidence=0.9)
        for i in range(1500)
    ]  # fmt: skip
    manager = PartitionManager(pg_engine)
    write_predictions(pg_engine, preds[:600], now=day, partitions=manager)
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE relname = :r"), {"r": partition}).scalar() < 600
    write_predictions(pg_engine, preds[600:], now=day, partitions=manager)
    with pg_engine.connect() as conn:
        assert conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE relname = :r"), {"r": partition}).scalar() >= 1000
        plan = conn.execute(
            sa.text("EXPLAIN SELECT prediction_id FROM predictions WHERE model = :m AND prediction_id = ANY(:ids) AND ts BETWEEN :lo AND :hi"),
            {"m": model_name, "ids": [p.prediction_id for p in preds[:500]], "lo": day, "hi": day + timedelta(hours=23)},
        ).scalars().all()
    # the planner knows the day holds the batch's 500 rows (never analysed, it guessed 1)
    estimate = int(re.search(r"rows=(\d+)", plan[0]).group(1))
    assert 250 <= estimate <= 1000, plan[0]
