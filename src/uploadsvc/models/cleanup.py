"""Cleanup's own tables: what each run did, and the lease that keeps runs apart."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import BigInteger, Boolean, Integer, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from uploadsvc.db import Base, UTCDateTime


class CleanupRun(Base):
    """What one cleanup run found and removed (docs/api.md, "Cleanup")."""

    __tablename__ = "cleanup_runs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    dry_run: Mapped[bool] = mapped_column(Boolean)
    # "done", "failed", or "skipped" when another run held the lease.
    outcome: Mapped[str] = mapped_column(String(16))
    cutoff_seconds: Mapped[int] = mapped_column(Integer)
    scanned: Mapped[int] = mapped_column(Integer, default=0)
    deleted: Mapped[int] = mapped_column(Integer, default=0)
    expired: Mapped[int] = mapped_column(Integer, default=0)
    aborted: Mapped[int] = mapped_column(Integer, default=0)
    freed_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    error: Mapped[str | None] = mapped_column(String(1024))


class Lease(Base):
    """A named lease, so that one periodic job runs at a time across all workers.

    Taken with a conditional UPDATE (free or expired → ours), which works the
    same on PostgreSQL and SQLite; expiry frees it if its holder dies.
    """

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
