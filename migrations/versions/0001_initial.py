"""Initial schema: models, versions, predictions, embeddings, ground truth, dirty hours, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from monitor.server.store.tables import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def _ground_truth_values() -> list[sa.Column]:
    return [
        sa.Column("labelled_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=True),
        sa.Column("boxes", sa.LargeBinary(), nullable=True),
        sa.Column("box_classes", sa.LargeBinary(), nullable=True),
        sa.Column("iscrowd", sa.LargeBinary(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "models",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("task", sa.String(16), nullable=False),
        sa.Column("classes", JSONType, nullable=False),
        sa.Column("operating_threshold", sa.Float(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("ground_truth", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("model", name="pk_models"),
    )
    op.create_table(
        "model_versions",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("first_seen", UTCDateTime(), nullable=False),
        sa.Column("last_seen", UTCDateTime(), nullable=False),
        sa.Column("predictions", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("errors", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("labelled", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name="pk_model_versions"),
    )
    op.create_table(
        "predictions",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("status", sa.SmallInteger(), nullable=False),
        sa.Column("latency_ms", sa.REAL(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("input_hash", sa.Text(), nullable=True),
        sa.Column("cohort", JSONType, nullable=True),
        sa.Column("trace_id", sa.String(32), nullable=True),
        sa.Column("span_id", sa.String(16), nullable=True),
        sa.Column("predicted_class", sa.Integer(), nullable=True),
        sa.Column("confidence", sa.REAL(), nullable=True),
        sa.Column("probabilities", sa.LargeBinary(), nullable=True),
        sa.Column("boxes", sa.LargeBinary(), nullable=True),
        sa.Column("box_classes", sa.LargeBinary(), nullable=True),
        sa.Column("box_scores", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("model", "prediction_id", "ts", name="pk_predictions"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_index("ix_predictions_model_ts", "predictions", ["model", "ts"])
    op.create_table(
        "embeddings",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("ts", UTCDateTime(), nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        sa.Column("model_version", sa.String(64), nullable=False),
        sa.Column("dtype", sa.SmallInteger(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("model", "ts", "prediction_id", name="pk_embeddings"),
        postgresql_partition_by="RANGE (ts)",
    )
    op.create_table(
        "ground_truth",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        sa.Column("prediction_ts", UTCDateTime(), nullable=False),
        *_ground_truth_values(),
        sa.PrimaryKeyConstraint("model", "prediction_ts", "prediction_id", name="pk_ground_truth"),
        postgresql_partition_by="RANGE (prediction_ts)",
    )
    op.create_table(
        "ground_truth_pending",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("prediction_id", sa.String(128), nullable=False),
        *_ground_truth_values(),
        sa.PrimaryKeyConstraint("model", "prediction_id", name="pk_ground_truth_pending"),
    )
    op.create_table(
        "dirty_hours",
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("hour_start", UTCDateTime(), nullable=False),
        sa.Column("marked_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "hour_start", name="pk_dirty_hours"),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("secret_sha256", sa.LargeBinary(32), nullable=False),
        sa.Column("scopes", JSONType, nullable=False),
        sa.Column("models", JSONType, nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("revoked_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("key_id", name="pk_api_keys"),
    )


def downgrade() -> None:
    for table in (
        "api_keys",
        "dirty_hours",
        "ground_truth_pending",
        "ground_truth",
        "embeddings",
        "predictions",
        "model_versions",
        "models",
    ):
        op.drop_table(table)
