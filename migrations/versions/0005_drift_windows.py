"""drift windows: which aligned windows the drift job scored, on which data and references

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from monitor.server.store.tables import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_windows",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.Column("references", sa.String(length=64), nullable=False),
        sa.Column("scored_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "window", "window_start", name=op.f("pk_drift_windows")),
    )


def downgrade() -> None:
    op.drop_table("drift_windows")
