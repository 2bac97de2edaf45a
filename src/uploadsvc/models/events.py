"""Database models of imported events (docs/api.md, "Event import").

Every row belongs to one event, and every event to the import job that
created it: ``events.import_job_id`` is unique, so re-running a job (a
worker crash, a retry, a job re-enqueued after Redis lost it) can never
create a second event. Ids are our own UUIDs; the archive's ids are kept in
``source_id`` only to resolve references while importing.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Index,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from uploadsvc.db import Base, UTCDateTime, stored_enum, utcnow


class ImportState(enum.StrEnum):
    PENDING = "PENDING"
    STARTED = "STARTED"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"


# One shape for the progress of an import job: what the import stream reports
# batch by batch, what ``import_jobs.progress`` holds, and the task's
# ``progress`` in the API (whose description is the docstring).
@dataclass(frozen=True, slots=True)
class Progress:
    """How far an import has come: its stage, bytes done of the stage's total, a message."""

    stage: str  # "queued", "download", "archive", a JSON file being read ("sessions"), "done"
    done: int  # bytes of that file read so far
    total: int  # bytes in that file (as the zip declares it)
    message: str

    def as_json(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "done": self.done,
            "total": self.total,
            "message": self.message,
        }


class ImportJob(Base):
    """One import of an Open Event archive (the API calls it a task: ``/v1/tasks/{id}``)."""

    __tablename__ = "import_jobs"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[str] = mapped_column(String(255), index=True)
    # The archive in storage (an `imports/...` key).
    source_key: Mapped[str] = mapped_column(String(1024))
    state: Mapped[ImportState] = mapped_column(
        stored_enum(ImportState, name="import_state", length=16),
        default=ImportState.PENDING,
    )
    # {stage, done, total, message}
    progress: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # {id, event_name, url, counts, warnings} on success
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # {file, record_id, message} on failure
    error: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # Touched while a worker makes progress: the reconciler re-enqueues jobs
    # that have been PENDING or STARTED without a touch for too long.
    heartbeat_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (Index("ix_import_jobs_state_heartbeat", "state", "heartbeat_at"),)


class Event(Base):
    __tablename__ = "events"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    owner_id: Mapped[str] = mapped_column(String(255), index=True)
    import_job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("import_jobs.id", ondelete="CASCADE"), unique=True
    )
    source_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(1024))
    description: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    timezone: Mapped[str | None] = mapped_column(String(64))
    location_name: Mapped[str | None] = mapped_column(String(1024))
    email: Mapped[str | None] = mapped_column(String(255))
    # An external link kept as given (never fetched), or None.
    logo_url: Mapped[str | None] = mapped_column(String(2048))
    # Our copy of media found in the archive (`events/{id}/logo`), or None.
    logo_key: Mapped[str | None] = mapped_column(String(1024))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


def _event_fk() -> Mapped[uuid.UUID]:
    return mapped_column(ForeignKey("events.id", ondelete="CASCADE"), index=True)


class Track(Base):
    __tablename__ = "tracks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    source_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(1024))
    color: Mapped[str | None] = mapped_column(String(32))
    description: Mapped[str | None] = mapped_column(Text)


class Microlocation(Base):
    __tablename__ = "microlocations"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    source_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(1024))
    floor: Mapped[str | None] = mapped_column(String(64))
    room: Mapped[str | None] = mapped_column(String(255))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)


class SessionType(Base):
    __tablename__ = "session_types"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    source_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(1024))
    length: Mapped[str | None] = mapped_column(String(32))


class Speaker(Base):
    __tablename__ = "speakers"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    source_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(1024))
    email: Mapped[str | None] = mapped_column(String(255))
    organisation: Mapped[str | None] = mapped_column(String(1024))
    position: Mapped[str | None] = mapped_column(String(1024))
    country: Mapped[str | None] = mapped_column(String(255))
    short_biography: Mapped[str | None] = mapped_column(Text)
    long_biography: Mapped[str | None] = mapped_column(Text)
    website: Mapped[str | None] = mapped_column(String(2048))
    twitter: Mapped[str | None] = mapped_column(String(2048))
    photo_url: Mapped[str | None] = mapped_column(String(2048))
    photo_key: Mapped[str | None] = mapped_column(String(1024))


class EventSession(Base):
    """A session of the conference's programme (a talk, a workshop): not a database session."""

    __tablename__ = "sessions"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    source_id: Mapped[str | None] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(String(2048))
    subtitle: Mapped[str | None] = mapped_column(String(2048))
    short_abstract: Mapped[str | None] = mapped_column(Text)
    long_abstract: Mapped[str | None] = mapped_column(Text)
    starts_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str | None] = mapped_column(String(64))
    track_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tracks.id", ondelete="SET NULL"))
    microlocation_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("microlocations.id", ondelete="SET NULL")
    )
    session_type_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("session_types.id", ondelete="SET NULL")
    )
    audio_url: Mapped[str | None] = mapped_column(String(2048))
    audio_key: Mapped[str | None] = mapped_column(String(1024))
    video_url: Mapped[str | None] = mapped_column(String(2048))
    video_key: Mapped[str | None] = mapped_column(String(1024))
    slides_url: Mapped[str | None] = mapped_column(String(2048))
    slides_key: Mapped[str | None] = mapped_column(String(1024))


session_speakers = Table(
    "session_speakers",
    Base.metadata,
    Column("session_id", ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True),
    Column("speaker_id", ForeignKey("speakers.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_session_speakers_speaker_id", "speaker_id"),
)


class Sponsor(Base):
    __tablename__ = "sponsors"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    source_id: Mapped[str | None] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(1024))
    url: Mapped[str | None] = mapped_column(String(2048))
    level: Mapped[str | None] = mapped_column(String(64))
    sponsor_type: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    logo_url: Mapped[str | None] = mapped_column(String(2048))
    logo_key: Mapped[str | None] = mapped_column(String(1024))


class SocialLink(Base):
    __tablename__ = "social_links"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    name: Mapped[str] = mapped_column(String(255))
    link: Mapped[str] = mapped_column(String(2048))


class CustomForm(Base):
    __tablename__ = "custom_forms"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    event_id: Mapped[uuid.UUID] = _event_fk()
    source_id: Mapped[str | None] = mapped_column(String(64))
    # The form definitions as the archive has them (session_form, speaker_form...).
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
