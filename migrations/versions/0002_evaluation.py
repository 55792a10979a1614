"""evaluation: hour states, label increments, metric history, job runs

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from monitor.server.store.tables import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "eval_states",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("hour_start", UTCDateTime(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("cohort_key", sa.String(length=64), nullable=False),
        sa.Column("cohort_value", sa.String(length=256), nullable=False),
        sa.Column("predictions", sa.BigInteger(), nullable=False),
        sa.Column("errors", sa.BigInteger(), nullable=False),
        sa.Column("labelled", sa.BigInteger(), nullable=False),
        sa.Column("classification", sa.LargeBinary(), nullable=True),
        sa.Column("calibration", sa.LargeBinary(), nullable=True),
        sa.Column("detection", sa.LargeBinary(), nullable=True),
        sa.Column("latency", sa.LargeBinary(), nullable=True),
        sa.Column("label_latency", sa.LargeBinary(), nullable=True),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model", "hour_start", "version", "cohort_key", "cohort_value", name=op.f("pk_eval_states")
        ),
    )
    op.create_table(
        "job_runs",
        sa.Column("job", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("last_started", UTCDateTime(), nullable=True),
        sa.Column("last_success", UTCDateTime(), nullable=True),
        sa.Column("last_duration_seconds", sa.Float(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("runs", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("failures", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("job", "model", name=op.f("pk_job_runs")),
    )
    op.create_table(
        "label_increments",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prediction_ts", UTCDateTime(), nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("logged_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "prediction_ts", "prediction_id", name=op.f("pk_label_increments")),
    )
    op.create_table(
        "metric_latest",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("cohort_key", sa.String(length=64), nullable=False),
        sa.Column("cohort_value", sa.String(length=256), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("class", sa.String(length=128), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("sample_count", sa.BigInteger(), nullable=False),
        sa.Column("label_coverage", sa.Float(), nullable=True),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model",
            "window",
            "version",
            "cohort_key",
            "cohort_value",
            "metric",
            "class",
            name=op.f("pk_metric_latest"),
        ),
    )
    op.create_table(
        "metric_points",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("window", sa.String(length=8), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("window_end", UTCDateTime(), nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("cohort_key", sa.String(length=64), nullable=False),
        sa.Column("cohort_value", sa.String(length=256), nullable=False),
        sa.Column("metric", sa.String(length=64), nullable=False),
        sa.Column("class", sa.String(length=128), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("sample_count", sa.BigInteger(), nullable=False),
        sa.Column("label_coverage", sa.Float(), nullable=True),
        sa.Column("computed_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint(
            "model",
            "window",
            "window_start",
            "version",
            "cohort_key",
            "cohort_value",
            "metric",
            "class",
            name=op.f("pk_metric_points"),
        ),
    )


def downgrade() -> None:
    op.drop_table("metric_points")
    op.drop_table("metric_latest")
    op.drop_table("label_increments")
    op.drop_table("job_runs")
    op.drop_table("eval_states")
