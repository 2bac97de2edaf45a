"""uploads: one row per upload, the user's file once confirmed

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UPLOAD_STATUSES = ("pending", "confirmed", "rejected", "expired", "deleted")


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.String(length=255), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("file_key", sa.String(length=1024), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=True),
        sa.Column(
            "status",
            sa.Enum(*UPLOAD_STATUSES, name="upload_status", native_enum=False, length=16),
            nullable=False,
        ),
        sa.Column("rejection_code", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("url_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("file_key", name=op.f("uq_uploads_file_key")),
    )
    op.create_index(
        "ix_uploads_owner_status_created",
        "uploads",
        ["owner_id", "status", "created_at", "id"],
    )
    op.create_index("ix_uploads_status_url_expires_at", "uploads", ["status", "url_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_status_url_expires_at", table_name="uploads")
    op.drop_index("ix_uploads_owner_status_created", table_name="uploads")
    op.drop_table("uploads")
