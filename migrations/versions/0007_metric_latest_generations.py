"""metric_latest_generations: a counter per model, raised with every change to its metric_latest rows

/metrics renders each model's quality series once and keeps them until the model's counter moves,
so a scrape re-reads only the models evaluated since the previous scrape. Models that already have
rows start at generation 1.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_latest_generations",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("model", name=op.f("pk_metric_latest_generations")),
    )
    op.execute("INSERT INTO metric_latest_generations (model, generation) SELECT DISTINCT model, 1 FROM metric_latest")


def downgrade() -> None:
    op.drop_table("metric_latest_generations")
