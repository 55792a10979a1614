"""prediction_ids: one identity per (model, prediction_id) whatever the timestamp; exposition text goes

``predictions`` is partitioned by day, so its key had to include the timestamp and the same id
sent again with another timestamp (or first without one) was stored twice. Every stored
prediction now has its identity here, claimed before its row is copied. Existing data: the
earliest row of each id is its identity; later duplicates are deleted with their embeddings, and
the hours they were in are marked for the evaluate job to recompute.

``metric_exposition`` (Prometheus text rendered by the jobs) is dropped: /metrics renders the
rows of ``metric_latest`` in the API process, which keeps them per model until its generation
counter moves.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from monitor.server.store.tables import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pg = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "prediction_ids",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "prediction_id", name=op.f("pk_prediction_ids")),
    )
    op.create_index("ix_prediction_ids_ts", "prediction_ids", ["ts"])
    op.execute("INSERT INTO prediction_ids (model, prediction_id, ts) SELECT model, prediction_id, MIN(ts) FROM predictions GROUP BY model, prediction_id")

    def later(table: str, ts: str) -> str:  # a row of ``table`` keyed to a later duplicate
        return (
            f"EXISTS (SELECT 1 FROM prediction_ids i WHERE i.model = {table}.model"
            f" AND i.prediction_id = {table}.prediction_id AND i.ts <> {table}.{ts})"
        )

    marked = "now()" if pg else "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
    hour = "date_trunc('hour', {})" if pg else "({} / 3600000000) * 3600000000"
    duplicate = f"SELECT model, prediction_id, ts FROM predictions WHERE {later('predictions', 'ts')}"
    # the hours of the duplicates and of their first rows are evaluated again
    op.execute(
        f"INSERT INTO dirty_hours (model, hour_start, marked_at) SELECT DISTINCT d.model, {hour.format('d.ts')}, {marked} "
        f"FROM ({duplicate}) d WHERE true ON CONFLICT DO NOTHING"
    )
    op.execute(
        f"INSERT INTO dirty_hours (model, hour_start, marked_at) SELECT DISTINCT i.model, {hour.format('i.ts')}, {marked} "
        f"FROM prediction_ids i JOIN ({duplicate}) d ON d.model = i.model AND d.prediction_id = i.prediction_id WHERE true ON CONFLICT DO NOTHING"
    )
    # the counters counted the duplicates
    for column, where in (("predictions", ""), ("errors", " AND p.status <> 0")):
        op.execute(
            f"UPDATE model_versions SET {column} = {column} - (SELECT COUNT(*) FROM predictions p WHERE p.model = model_versions.model"
            f" AND p.model_version = model_versions.version AND {later('p', 'ts')}{where})"
        )
    # labels: the newest revision of an id moves to its first row, the others go
    op.execute(
        "DELETE FROM ground_truth WHERE EXISTS (SELECT 1 FROM ground_truth g WHERE g.model = ground_truth.model"
        " AND g.prediction_id = ground_truth.prediction_id AND g.prediction_ts <> ground_truth.prediction_ts"
        " AND (g.labelled_at > ground_truth.labelled_at OR (g.labelled_at = ground_truth.labelled_at AND g.prediction_ts < ground_truth.prediction_ts)))"
    )
    op.execute(
        "UPDATE ground_truth SET prediction_ts = (SELECT i.ts FROM prediction_ids i WHERE i.model = ground_truth.model"
        f" AND i.prediction_id = ground_truth.prediction_id) WHERE {later('ground_truth', 'prediction_ts')}"
    )
    op.execute(f"DELETE FROM label_increments WHERE {later('label_increments', 'prediction_ts')}")
    op.execute(f"DELETE FROM embeddings WHERE {later('embeddings', 'ts')}")
    op.execute(f"DELETE FROM predictions WHERE {later('predictions', 'ts')}")
    op.drop_table("metric_exposition")


def downgrade() -> None:
    op.create_table(
        "metric_exposition",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("family", sa.String(128), nullable=False),
        sa.Column("cohort_keys", sa.Text(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "family", name=op.f("pk_metric_exposition")),
    )
    op.drop_index("ix_prediction_ids_ts", table_name="prediction_ids")
    op.drop_table("prediction_ids")
