"""Queries on imported events and what belongs to them (sessions, speakers, ...)."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.models.events import (
    Event,
    EventSession,
    Microlocation,
    SessionType,
    SocialLink,
    Speaker,
    Sponsor,
    Track,
    session_speakers,
)

# The kinds of rows an event's counts report, by the name the API uses.
COUNTED: dict[str, Any] = {
    "sessions": EventSession,
    "speakers": Speaker,
    "tracks": Track,
    "microlocations": Microlocation,
    "session_types": SessionType,
    "sponsors": Sponsor,
}

Row = TypeVar("Row", Track, Microlocation, SessionType, Speaker, Sponsor, EventSession)


async def event_of_import_job(session: AsyncSession, *, job_id: uuid.UUID) -> uuid.UUID | None:
    """The id of the event an import job created, if it committed one."""
    return await session.scalar(select(Event.id).where(Event.import_job_id == job_id))


async def count_rows(session: AsyncSession, *, event_id: uuid.UUID) -> dict[str, int]:
    """How many rows of each kind in ``COUNTED`` the event has (one query)."""
    counts = [
        select(func.count()).select_from(model).where(model.event_id == event_id).scalar_subquery()
        for model in COUNTED.values()
    ]
    row = (await session.execute(select(*counts))).one()
    return {name: int(count or 0) for name, count in zip(COUNTED, row, strict=True)}


async def social_links(session: AsyncSession, *, event_id: uuid.UUID) -> list[SocialLink]:
    return list(await session.scalars(select(SocialLink).where(SocialLink.event_id == event_id)))


async def list_rows(session: AsyncSession, model: type[Row], *, event_id: uuid.UUID) -> list[Row]:
    """The event's rows of one kind, in the archive's order of ids."""
    return list(
        await session.scalars(
            select(model).where(model.event_id == event_id).order_by(model.source_id, model.id)
        )
    )


async def speaker_links(
    session: AsyncSession, *, event_id: uuid.UUID
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Every (session id, speaker id) pair of the event."""
    result = await session.execute(
        select(session_speakers.c.session_id, session_speakers.c.speaker_id)
        .join(EventSession, EventSession.id == session_speakers.c.session_id)
        .where(EventSession.event_id == event_id)
    )
    return [(row[0], row[1]) for row in result]


async def reference_names(session: AsyncSession, *, event_id: uuid.UUID) -> dict[uuid.UUID, str]:
    """The names of the event's tracks, rooms and session types, by id: what a
    session's references show."""
    names: dict[uuid.UUID, str] = {}
    for model in (Track, Microlocation, SessionType):
        for row_id, name in await session.execute(
            select(model.id, model.name).where(model.event_id == event_id)
        ):
            names[row_id] = name
    return names
