"""metric_exposition: each model's quality series as Prometheus text, rendered by the writer

The evaluate and drift jobs render a model's /metrics lines when they replace its metric_latest
rows, in the same transaction; a scrape copies the text rather than rendering every row (the
first scrape after an evaluation of 20 models x 50 classes rendered 29 000 rows). Models without
rows here (written before this revision) are rendered from metric_latest by the scrape, as before.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_exposition",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("family", sa.String(length=128), nullable=False),
        sa.Column("cohort_keys", sa.Text(), nullable=False),
        sa.Column("lines", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("model", "family", name=op.f("pk_metric_exposition")),
    )


def downgrade() -> None:
    op.drop_table("metric_exposition")
