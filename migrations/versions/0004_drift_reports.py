"""drift references and weekly reports

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from monitor.server.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_reference_specs",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source_version", sa.String(length=64), nullable=True),
        sa.Column("range_start", UTCDateTime(), nullable=True),
        sa.Column("range_end", UTCDateTime(), nullable=True),
        sa.Column("size", sa.Integer(), nullable=True),
        sa.Column("set_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name=op.f("pk_drift_reference_specs")),
    )
    op.create_table(
        "drift_references",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("detector", sa.String(length=32), nullable=False),
        sa.Column("feature", sa.String(length=64), nullable=False),
        sa.Column("summary", sa.LargeBinary(), nullable=False),
        sa.Column("n_reference", sa.BigInteger(), nullable=False),
        sa.Column("reference_start", UTCDateTime(), nullable=False),
        sa.Column("reference_end", UTCDateTime(), nullable=False),
        sa.Column("fitted_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", "detector", "feature", name=op.f("pk_drift_references")),
    )
    op.create_table(
        "reports",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("report_id", sa.String(length=32), nullable=False),
        sa.Column("week", sa.String(length=10), nullable=False),
        sa.Column("period_start", UTCDateTime(), nullable=False),
        sa.Column("period_end", UTCDateTime(), nullable=False),
        sa.Column("generated_at", UTCDateTime(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("html", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("model", "report_id", name=op.f("pk_reports")),
    )
    op.create_index("ix_reports_model_period_start", "reports", ["model", "period_start"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reports_model_period_start", table_name="reports")
    op.drop_table("reports")
    op.drop_table("drift_references")
    op.drop_table("drift_reference_specs")
