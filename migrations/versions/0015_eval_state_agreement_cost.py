"""eval_states.agreement and eval_states.cost: annotator agreement and usage per hour slice

The evaluate job keeps, with every hour slice's states, the agreement counts of its predictions'
annotations and its usage per (device, batch size), so label agreement and cost per 1 000
inferences merge over windows like the other metrics (docs/quality.md). Both are nullable: a
slice without annotations has no agreement state.

Hours evaluated before this revision have neither. The hours of the last eight days are marked
dirty, so the next evaluate run recomputes them and the rolling windows (7d by default) and the
weekly report show cost and agreement at once; older hours get them when they are recomputed.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

_RECOMPUTED_DAYS = 8


def upgrade() -> None:
    with op.batch_alter_table("eval_states") as batch:
        batch.add_column(sa.Column("agreement", sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column("cost", sa.LargeBinary(), nullable=True))
    if op.get_bind().dialect.name == "sqlite":  # timestamps are integer microseconds there
        now = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)"
        since = f"{now} - {_RECOMPUTED_DAYS * 86400 * 1_000_000}"
    else:
        now = "now()"
        since = f"now() - interval '{_RECOMPUTED_DAYS} days'"
    op.execute(
        f"INSERT INTO dirty_hours (model, hour_start, marked_at) SELECT DISTINCT model, hour_start, {now} "
        f"FROM eval_states WHERE hour_start >= {since} ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    with op.batch_alter_table("eval_states") as batch:
        batch.drop_column("cost")
        batch.drop_column("agreement")
