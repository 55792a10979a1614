"""samples, their access log and counters; labelling queues

Sample images are stored in an object store, encrypted; ``samples`` holds their metadata (one per
prediction), ``sample_access`` every view and export, ``sample_counts`` the running totals that
/metrics exports. ``label_queues`` and ``label_queue_items`` hold the active-learning selections.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-09
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from monitor.server.store.tables import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "samples",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("sample_id", sa.String(length=32), nullable=False),
        sa.Column("captured_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("media_type", sa.String(length=16), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("source_width", sa.Integer(), nullable=True),
        sa.Column("source_height", sa.Integer(), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.LargeBinary(length=32), nullable=False),
        sa.Column("faces", sa.SmallInteger(), nullable=False),
        sa.Column("plates", sa.SmallInteger(), nullable=False),
        sa.Column("masking", sa.String(length=64), nullable=False),
        sa.Column("exposed", sa.Boolean(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("object_key", sa.String(length=400), nullable=False),
        sa.PrimaryKeyConstraint("model", "prediction_id", name=op.f("pk_samples")),
    )
    op.create_index("ix_samples_model_sample_id", "samples", ["model", "sample_id"], unique=True)
    op.create_index("ix_samples_model_captured_at", "samples", ["model", "captured_at"])
    op.create_table(
        "sample_access",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.Column("access_id", sa.String(length=32), nullable=False),
        sa.Column("sample_id", sa.String(length=32), nullable=False),
        sa.Column("principal", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("exposed", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.String(length=256), nullable=False),
        sa.PrimaryKeyConstraint("model", "at", "access_id", name=op.f("pk_sample_access")),
    )
    op.create_index("ix_sample_access_model_sample_id", "sample_access", ["model", "sample_id"])
    op.create_table(
        "sample_counts",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model", "name", name=op.f("pk_sample_counts")),
    )
    op.create_table(
        "label_queues",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("strategy", sa.String(length=32), nullable=False),
        sa.Column("params", JSONType, nullable=False),
        sa.Column("built_at", UTCDateTime(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model", "queue", name=op.f("pk_label_queues")),
    )
    op.create_table(
        "label_queue_items",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("queue", sa.String(length=64), nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("added_at", UTCDateTime(), nullable=False),
        sa.Column("exported_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("model", "queue", "prediction_id", name=op.f("pk_label_queue_items")),
    )


def downgrade() -> None:
    op.drop_table("label_queue_items")
    op.drop_table("label_queues")
    op.drop_table("sample_counts")
    op.drop_index("ix_sample_access_model_sample_id", table_name="sample_access")
    op.drop_table("sample_access")
    op.drop_index("ix_samples_model_captured_at", table_name="samples")
    op.drop_index("ix_samples_model_sample_id", table_name="samples")
    op.drop_table("samples")
