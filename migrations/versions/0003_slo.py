"""slo: per-minute SLO event counts, counted time slices, silences, notifier incidents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from monitor.server.store.tables import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "slo_events",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("slo", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("minute", UTCDateTime(), nullable=False),
        sa.Column("events", sa.BigInteger(), nullable=False),
        sa.Column("bad", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model", "slo", "version", "minute", name=op.f("pk_slo_events")),
    )
    op.create_table(
        "slo_slices",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("slo", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("sample_count", sa.BigInteger(), nullable=False),
        sa.Column("bad", sa.SmallInteger(), nullable=False),
        sa.Column("counted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "slo", "version", "window_start", name=op.f("pk_slo_slices")),
    )
    op.create_table(
        "silences",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("silence_id", sa.String(length=16), nullable=False),
        sa.Column("slo", sa.String(length=100), nullable=True),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("created_by", sa.String(length=128), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "silence_id", name=op.f("pk_silences")),
    )
    op.create_table(
        "notifications",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("slo", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("fingerprint", sa.String(length=16), nullable=False),
        sa.Column("first_fired", UTCDateTime(), nullable=False),
        sa.Column("last_sent", UTCDateTime(), nullable=True),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_sent", UTCDateTime(), nullable=True),
        sa.Column("alerts", JSONType, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "slo", "version", "severity", name=op.f("pk_notifications")),
    )


def downgrade() -> None:
    op.drop_table("notifications")
    op.drop_table("silences")
    op.drop_table("slo_slices")
    op.drop_table("slo_events")
