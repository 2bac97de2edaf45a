"""scan state: whether ClamAV has scanned a file, and what it found

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCAN_STATES = ("pending", "clean", "infected", "unscanned_too_large")


def upgrade() -> None:
    # Batch mode: SQLite cannot add several columns and an index in one ALTER.
    # Existing rows keep NULL: files confirmed while scanning was off.
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "scan_state",
                sa.Enum(*SCAN_STATES, name="scan_state", native_enum=False, length=24),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("scan_signature", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_uploads_scan_state", ["scan_state"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("uploads", schema=None) as batch_op:
        batch_op.drop_index("ix_uploads_scan_state")
        batch_op.drop_column("scanned_at")
        batch_op.drop_column("scan_signature")
        batch_op.drop_column("scan_state")
