"""Queries on imported events and what belongs to them (sessions, speakers, ...)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any, TypeVar

from sqlalchemy import and_, func, literal, or_, select
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
from uploadsvc.repository import cursors

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


async def list_rows(
    session: AsyncSession,
    model: type[Row],
    *,
    event_id: uuid.UUID,
    cursor: str | None,
    limit: int,
) -> tuple[list[Row], str | None]:
    """One page of the event's rows of a kind, in the archive's order of ids, and the next cursor.

    Keyset pagination on (source id, id): a page costs the same however far
    into the list it is, and rows imported meanwhile never shift a page.
    """
    source_id = func.coalesce(model.source_id, "")
    query = select(model).where(model.event_id == event_id)
    if cursor is not None:
        after_source, after_id = cursors.decode(cursor, fields=2)
        try:
            last_id = uuid.UUID(after_id)
        except ValueError:
            raise cursors.invalid() from None
        query = query.where(
            or_(
                source_id > after_source,
                and_(source_id == after_source, model.id > literal(last_id, model.id.type)),
            )
        )
    rows = list(await session.scalars(query.order_by(source_id, model.id).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], cursors.encode(last.source_id or "", str(last.id))


async def speaker_links(
    session: AsyncSession,
    *,
    session_ids: Collection[uuid.UUID] | None = None,
    speaker_ids: Collection[uuid.UUID] | None = None,
) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """The (session id, speaker id) pairs of these sessions, or of these speakers."""
    query = select(session_speakers.c.session_id, session_speakers.c.speaker_id)
    if session_ids is not None:
        query = query.where(session_speakers.c.session_id.in_(session_ids))
    if speaker_ids is not None:
        query = query.where(session_speakers.c.speaker_id.in_(speaker_ids))
    return [(row[0], row[1]) for row in await session.execute(query)]


async def reference_names(
    session: AsyncSession, *, ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """The names of these tracks, rooms and session types, by id: what a session's
    references show."""
    names: dict[uuid.UUID, str] = {}
    for model in (Track, Microlocation, SessionType):
        for row_id, name in await session.execute(
            select(model.id, model.name).where(model.id.in_(ids))
        ):
            names[row_id] = name
    return names
