"""canary decisions and the automation outbox: events, deliveries per endpoint, every attempt

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from monitor.server.store.tables import UTCDateTime

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "canary_decisions",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("baseline", sa.String(length=64), nullable=False),
        sa.Column("candidate", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=200), nullable=False),
        sa.Column("decision", sa.SmallInteger(), nullable=False),
        sa.Column("gating", sa.SmallInteger(), nullable=False),
        sa.Column("estimate", sa.Float(), nullable=True),
        sa.Column("low", sa.Float(), nullable=True),
        sa.Column("high", sa.Float(), nullable=True),
        sa.Column("samples", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.BigInteger(), nullable=False),
        sa.Column("since", UTCDateTime(), nullable=False),
        sa.Column("evaluated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "baseline", "candidate", "metric", name=op.f("pk_canary_decisions")),
    )
    op.create_table(
        "automation_events",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("payload", JSONType, nullable=False),
        sa.PrimaryKeyConstraint("model", "event_id", name=op.f("pk_automation_events")),
    )
    op.create_index("ix_automation_events_model_created_at", "automation_events", ["model", "created_at"])
    op.create_table(
        "automation_deliveries",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("delivered_at", UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("model", "event_id", "endpoint", name=op.f("pk_automation_deliveries")),
    )
    op.create_index("ix_automation_deliveries_state_next", "automation_deliveries", ["state", "next_attempt_at"])
    op.create_table(
        "automation_attempts",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint", sa.String(length=64), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("model", "event_id", "endpoint", "attempt", name=op.f("pk_automation_attempts")),
    )


def downgrade() -> None:
    op.drop_table("automation_attempts")
    op.drop_index("ix_automation_deliveries_state_next", table_name="automation_deliveries")
    op.drop_table("automation_deliveries")
    op.drop_index("ix_automation_events_model_created_at", table_name="automation_events")
    op.drop_table("automation_events")
    op.drop_table("canary_decisions")
