"""eval_states.part: late labels are stored as parts of an hour's state, not merged into it

An hour's slice state is the merge of its rows: part 0 computed from the hour's predictions, and
one part per evaluate run that merged late labels into the hour. Merging 1% late labels spread
over a week rewrote every hour's whole state (tens of megabytes for a detection model); a part
holds only what the labels add. Existing rows become part 0.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_KEY = ["model", "hour_start", "version", "cohort_key", "cohort_value"]


def upgrade() -> None:
    with op.batch_alter_table("eval_states") as batch:
        batch.add_column(sa.Column("part", sa.Integer(), nullable=False, server_default="0"))
        batch.drop_constraint("pk_eval_states", type_="primary")
        batch.create_primary_key("pk_eval_states", [*_KEY, "part"])


def downgrade() -> None:
    # parts cannot be merged in SQL: the hours that have late-label parts are marked dirty, so
    # the next evaluate run recomputes them from their rows
    sqlite = op.get_bind().dialect.name == "sqlite"
    now = "CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER)" if sqlite else "now()"
    op.execute(
        f"INSERT INTO dirty_hours (model, hour_start, marked_at) SELECT DISTINCT model, hour_start, {now} "
        "FROM eval_states WHERE part <> 0 ON CONFLICT DO NOTHING"
    )
    op.execute("DELETE FROM eval_states WHERE part <> 0")
    with op.batch_alter_table("eval_states") as batch:
        batch.drop_constraint("pk_eval_states", type_="primary")
        batch.create_primary_key("pk_eval_states", _KEY)
        batch.drop_column("part")
