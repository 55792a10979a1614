"""metric class column wide enough for confusion cells: "<true class>\x1f<predicted class>"

A confusion cell names two classes of up to 128 characters each, so ``class`` of metric_points
and metric_latest needs 2 x 128 + 1 characters; at 128 the evaluate job failed on PostgreSQL for
any model whose two longest class names add up to more than 127 characters.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("metric_points", "metric_latest")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("class", existing_type=sa.String(length=128), type_=sa.String(length=257), existing_nullable=False)


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.alter_column("class", existing_type=sa.String(length=257), type_=sa.String(length=128), existing_nullable=False)
