from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import BigInteger, Index, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from uploadsvc.db import Base, UTCDateTime, stored_enum, utcnow


class UploadStatus(enum.StrEnum):
    PENDING = "pending"  # URL handed out, bytes not confirmed yet
    CONFIRMED = "confirmed"  # checked and recorded: a file of its owner
    REJECTED = "rejected"  # failed a check; its object was deleted
    EXPIRED = "expired"  # never confirmed; claimed by cleanup
    DELETED = "deleted"  # deleted by its owner
    ABORTED = "aborted"  # cancelled by its owner before it was confirmed


class ScanState(enum.StrEnum):
    """What the malware scanner said about a file (NULL: confirmed while scanning was off)."""

    PENDING = "pending"  # confirmed, not scanned yet: not served
    CLEAN = "clean"  # scanned, nothing found
    INFECTED = "infected"  # a signature matched; the object is quarantined or deleted
    UNSCANNED_TOO_LARGE = "unscanned_too_large"  # over clamd's stream limit: never sent


class Upload(Base):
    __tablename__ = "uploads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[str] = mapped_column(String(255))
    purpose: Mapped[str] = mapped_column(String(32))
    file_key: Mapped[str] = mapped_column(String(1024), unique=True)
    # The client's filename, sanitised; shown to users and in Content-Disposition.
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(255))
    # The declared size; None when the client could not declare one (Uppy's
    # S3 protocol does not send it): confirm then records the stored size.
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    # Base64 SHA-256: declared by the client, or reported by storage on confirm.
    sha256: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[UploadStatus] = mapped_column(
        stored_enum(UploadStatus, name="upload_status", length=16),
        default=UploadStatus.PENDING,
    )
    rejection_code: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    url_expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    confirmed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Set for uploads made of parts (S3 multipart): storage's upload id, and
    # the size of every part but the last when the total size was declared.
    multipart_upload_id: Mapped[str | None] = mapped_column(String(1024))
    part_size: Mapped[int | None] = mapped_column(BigInteger)
    # docs/api.md, "Malware scanning": only NULL and clean files are served.
    scan_state: Mapped[ScanState | None] = mapped_column(
        stored_enum(ScanState, name="scan_state", length=24)
    )
    # The signature clamd named for an infected file.
    scan_signature: Mapped[str | None] = mapped_column(String(255))
    scanned_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The file list: a user's confirmed files, newest first.
        Index("ix_uploads_owner_status_created", "owner_id", "status", "created_at", "id"),
        # Cleanup scans by status and age.
        Index("ix_uploads_status_url_expires_at", "status", "url_expires_at"),
        # The scan reconciler and the admin's list of infected files.
        Index("ix_uploads_scan_state", "scan_state"),
    )
