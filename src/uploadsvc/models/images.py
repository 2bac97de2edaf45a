"""The variants of an image: of a file, or of a medium an event import stored
(docs/api.md, "Image variants")."""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column, relationship

from uploadsvc.db import Base, UTCDateTime, stored_enum, utcnow
from uploadsvc.models.uploads import Upload


class VariantStatus(enum.StrEnum):
    PENDING = "pending"  # the file is confirmed, its job has not made the variant yet
    READY = "ready"  # stored under object_key
    FAILED = "failed"  # refused or undecodable; failure_reason says why


class ImageVariant(Base):
    __tablename__ = "image_variants"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    # A variant is of a file (file_id) or of an imported image medium, never
    # both. A medium is named by the id of the row it belongs to (an event's
    # or sponsor's logo, a speaker's photo: one image each), its object by
    # source_key. The rows go with their file's or event's row; the objects
    # go when the file is deleted, or with cleanup.
    file_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("uploads.id", ondelete="CASCADE"), index=True
    )
    event_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    medium_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    source_key: Mapped[str | None] = mapped_column(String(1024))
    # Never loaded (lazy="raise"): it is here so that a file's row is written
    # before its variants' rows when both are staged in one session (the
    # streaming routes stage them together and write them at one commit).
    file: Mapped[Upload] = relationship(lazy="raise")
    name: Mapped[str] = mapped_column(String(32))
    status: Mapped[VariantStatus] = mapped_column(
        stored_enum(VariantStatus, name="variant_status", length=16),
        default=VariantStatus.PENDING,
    )
    # Unique and indexed: cleanup asks which listed variant objects a row records.
    object_key: Mapped[str | None] = mapped_column(String(1024), unique=True)
    content_type: Mapped[str | None] = mapped_column(String(64))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    failure_reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("file_id", "name"),
        UniqueConstraint("medium_id", "name"),
    )
