"""multipart uploads: storage's upload id and part size; declared size optional

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The status column is a plain string (native_enum=False, no CHECK), so
    # the new "aborted" status needs no change here.
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(sa.Column("multipart_upload_id", sa.String(length=1024), nullable=True))
        batch.add_column(sa.Column("part_size", sa.BigInteger(), nullable=True))
        batch.alter_column("size_bytes", existing_type=sa.BigInteger(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.alter_column("size_bytes", existing_type=sa.BigInteger(), nullable=False)
        batch.drop_column("part_size")
        batch.drop_column("multipart_upload_id")
