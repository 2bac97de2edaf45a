"""image variants: the thumbnail, small, icon and large copies of an image file

Revision ID: 0007
Revises: 0005 (0006 once the scan state migration lands)
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_variants",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column(
            "status",
            sa.Enum(
                "pending", "ready", "failed", name="variant_status", native_enum=False, length=16
            ),
            nullable=False,
        ),
        sa.Column("object_key", sa.String(length=1024), nullable=True),
        sa.Column("content_type", sa.String(length=64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("failure_reason", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["uploads.id"],
            name=op.f("fk_image_variants_file_id_uploads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_variants")),
        sa.UniqueConstraint("file_id", "name", name=op.f("uq_image_variants_file_id_name")),
    )
    with op.batch_alter_table("image_variants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_image_variants_file_id"), ["file_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("image_variants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_image_variants_file_id"))
    op.drop_table("image_variants")
