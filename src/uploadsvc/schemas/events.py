"""Response bodies of the event import and event read routes."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from uploadsvc.models.events import ImportState, Progress
from uploadsvc.schemas.images import ImageVariantRead
from uploadsvc.schemas.text import Text

MEDIA_URL = (
    "An external link, as the archive gave it; or, when the archive held the file"
    " (`*_key`), a GET URL of our copy, signed for `UPLOADSVC_DOWNLOAD_URL_EXPIRES_SECONDS`."
)


MEDIA_VARIANTS = (
    "The image variants of our copy (`large`, `thumbnail`, `small`, `icon`), made after"
    " the import: each `pending`, `ready` with its signed `download_url`, or `failed`."
)


def _variants() -> Any:
    return Field(default_factory=list, description=MEDIA_VARIANTS)


class ImportByKey(BaseModel):
    file_key: Text = Field(
        min_length=1, max_length=1024, description="A confirmed `event-import` upload."
    )


class TaskAccepted(BaseModel):
    task_id: uuid.UUID
    task_url: str


class TaskError(BaseModel):
    file: str | None
    record_id: str | None
    message: str


class ImportResult(BaseModel):
    id: uuid.UUID
    event_name: str
    url: str
    counts: dict[str, int]
    warnings: list[str]


class TaskRead(BaseModel):
    task_id: uuid.UUID
    state: ImportState
    progress: Progress | None = None
    result: ImportResult | str | None = Field(
        default=None,
        description="On SUCCESS the imported event; on FAILURE the error's message.",
    )
    error: TaskError | None = None
    created_at: dt.datetime
    finished_at: dt.datetime | None = None


class ImportJobList(BaseModel):
    items: list[TaskRead]


class Ref(BaseModel):
    id: uuid.UUID
    name: str


class EventRead(BaseModel):
    id: uuid.UUID
    name: str
    description: str | None
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    timezone: str | None
    location_name: str | None
    logo_url: str | None = Field(description=MEDIA_URL)
    logo_key: str | None = Field(description="Our copy of the archive's logo, in storage.")
    logo_variants: list[ImageVariantRead] = _variants()
    counts: dict[str, int]
    social_links: list[dict[str, str]]


class TrackRead(BaseModel):
    id: uuid.UUID
    name: str
    color: str | None
    description: str | None


class MicrolocationRead(BaseModel):
    id: uuid.UUID
    name: str
    floor: str | None
    room: str | None
    latitude: float | None
    longitude: float | None


class SessionTypeRead(BaseModel):
    id: uuid.UUID
    name: str
    length: str | None


class SpeakerRead(BaseModel):
    id: uuid.UUID
    name: str
    email: str | None
    organisation: str | None
    position: str | None
    country: str | None
    short_biography: str | None
    long_biography: str | None
    website: str | None
    twitter: str | None
    photo_url: str | None = Field(description=MEDIA_URL)
    photo_key: str | None
    photo_variants: list[ImageVariantRead] = _variants()
    session_ids: list[uuid.UUID]


class SessionRead(BaseModel):
    id: uuid.UUID
    title: str
    subtitle: str | None
    short_abstract: str | None
    long_abstract: str | None
    starts_at: dt.datetime | None
    ends_at: dt.datetime | None
    state: str | None
    language: str | None
    track: Ref | None
    microlocation: Ref | None
    session_type: Ref | None
    speaker_ids: list[uuid.UUID]
    audio_url: str | None = Field(description=MEDIA_URL)
    audio_key: str | None
    video_url: str | None = Field(description=MEDIA_URL)
    video_key: str | None
    slides_url: str | None = Field(description=MEDIA_URL)
    slides_key: str | None


class SponsorRead(BaseModel):
    id: uuid.UUID
    name: str
    url: str | None
    level: str | None
    sponsor_type: str | None
    description: str | None
    logo_url: str | None = Field(description=MEDIA_URL)
    logo_key: str | None
    logo_variants: list[ImageVariantRead] = _variants()


ItemT = TypeVar("ItemT", bound=BaseModel)


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` for the next page; null at the end."
    )


# An event's lists come a page at a time: one GET never answers a whole
# 500,000-row event (docs/api.md, "Event import").
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class PageRequest:
    """Which page of a list: after ``cursor`` (the start when None), ``limit`` rows."""

    cursor: str | None = None
    limit: int = DEFAULT_PAGE_SIZE


def as_dict(row: Any, fields: type[BaseModel]) -> dict[str, Any]:
    return {name: getattr(row, name) for name in fields.model_fields if hasattr(row, name)}
