"""annotations, withdrawn labels, models.label_policy; the resources of predictions

Ground truth may name its annotator: every annotator's newest label of a prediction is kept in
``label_annotations``, and a per-model ``label_policy`` (newest, majority, exclude) derives the one
label in ``ground_truth`` that the quality metrics use. ``withdrawn_labels`` remembers the labels
the ``exclude`` policy took back. Existing classification labels (stored and waiting) become the
annotations of an unnamed annotator, so a model switched to another policy keeps its history.

Predictions gain the optional resources of the call that made them (device, batch size, CPU
time, GPU utilisation and memory): nullable columns, which cost nothing on rows without them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from monitor.server.store.tables import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_RESOURCES = (
    ("device", sa.String(length=128)),
    ("batch_size", sa.Integer()),
    ("cpu_time_ms", sa.REAL()),
    ("gpu_utilization_ratio", sa.REAL()),
    ("gpu_memory_bytes", sa.BigInteger()),
)


def upgrade() -> None:
    op.create_table(
        "label_annotations",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("annotator", sa.String(length=128), nullable=False),
        sa.Column("labelled_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("audit", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("model", "prediction_id", "annotator", name=op.f("pk_label_annotations")),
    )
    op.create_index("ix_label_annotations_model_received_at", "label_annotations", ["model", "received_at"])
    op.create_table(
        "withdrawn_labels",
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("prediction_id", sa.String(length=128), nullable=False),
        sa.Column("counted", sa.Boolean(), nullable=False),
        sa.Column("withdrawn_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("model", "prediction_id", name=op.f("pk_withdrawn_labels")),
    )
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("label_policy", sa.String(length=16), server_default="newest", nullable=False))
    # on PostgreSQL a column added to the partitioned parent is added to every partition
    for name, type_ in _RESOURCES:
        op.add_column("predictions", sa.Column(name, type_, nullable=True))
    false = "false" if op.get_bind().dialect.name == "postgresql" else "0"
    for table in ("ground_truth", "ground_truth_pending"):
        op.execute(
            "INSERT INTO label_annotations (model, prediction_id, annotator, labelled_at, received_at, label, audit) "
            f"SELECT model, prediction_id, '', labelled_at, received_at, label, {false} FROM {table} "
            "WHERE label IS NOT NULL ON CONFLICT DO NOTHING"
        )


def downgrade() -> None:
    for name, _ in reversed(_RESOURCES):
        op.drop_column("predictions", name)
    with op.batch_alter_table("models") as batch:
        batch.drop_column("label_policy")
    op.drop_table("withdrawn_labels")
    op.drop_index("ix_label_annotations_model_received_at", table_name="label_annotations")
    op.drop_table("label_annotations")
