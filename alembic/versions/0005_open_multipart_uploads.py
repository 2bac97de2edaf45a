"""open multipart uploads: the keys where storage may hold an incomplete upload

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "open_multipart_uploads",
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_open_multipart_uploads")),
    )
    # Cleanup no longer lists every incomplete upload, so the watermark of
    # its last listing (a row of the leases table) has no use.
    op.execute("DELETE FROM leases WHERE name = 'cleanup-multipart-watermark'")


def downgrade() -> None:
    op.drop_table("open_multipart_uploads")
