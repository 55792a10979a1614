"""metric_points: an index on (model, window, window_start) instead of the primary key

The evaluate job replaces whole windows of metric rows (DELETE, then COPY, under the job's lock
per model). With a unique index over the eight key columns, every row written had to visit the
dead version it replaced to prove it unique: rewriting a week of windows (124 000 rows) took 2.5 s
of COPY, 0.6 s with this index. Reads select by model, window and a range of window starts,
which this index serves; the writers keep rows unique (tests/server/test_evaluate.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_KEY = ["model", "window", "window_start", "version", "cohort_key", "cohort_value", "metric", "class"]


def upgrade() -> None:
    with op.batch_alter_table("metric_points") as batch:
        batch.drop_constraint("pk_metric_points", type_="primary")
        batch.create_index("ix_metric_points_window", ["model", "window", "window_start"])


def downgrade() -> None:
    with op.batch_alter_table("metric_points") as batch:
        batch.drop_index("ix_metric_points_window")
        batch.create_primary_key("pk_metric_points", _KEY)
