"""image variants of an imported event's media, beside those of files; their keys unique

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Batch mode: SQLite changes a column's nullability by copying the table.
    with op.batch_alter_table("image_variants", schema=None) as batch_op:
        batch_op.alter_column("file_id", existing_type=sa.Uuid(), nullable=True)
        batch_op.add_column(sa.Column("event_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("medium_id", sa.Uuid(), nullable=True))
        batch_op.add_column(sa.Column("source_key", sa.String(length=1024), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_image_variants_event_id_events"),
            "events",
            ["event_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_index(batch_op.f("ix_image_variants_event_id"), ["event_id"], unique=False)
        batch_op.create_unique_constraint(
            batch_op.f("uq_image_variants_medium_id_name"), ["medium_id", "name"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_image_variants_object_key"), ["object_key"]
        )


def downgrade() -> None:
    op.execute("DELETE FROM image_variants WHERE file_id IS NULL")
    with op.batch_alter_table("image_variants", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_image_variants_object_key"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_image_variants_medium_id_name"), type_="unique")
        batch_op.drop_index(batch_op.f("ix_image_variants_event_id"))
        batch_op.drop_constraint(
            batch_op.f("fk_image_variants_event_id_events"), type_="foreignkey"
        )
        batch_op.drop_column("source_key")
        batch_op.drop_column("medium_id")
        batch_op.drop_column("event_id")
        batch_op.alter_column("file_id", existing_type=sa.Uuid(), nullable=False)
