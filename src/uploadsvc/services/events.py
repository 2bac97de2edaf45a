"""Reading imported events and import tasks; everything is visible to its owner only."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.errors import NotFound
from uploadsvc.models.events import (
    Event,
    ImportJob,
    Microlocation,
    Session,
    SessionType,
    SocialLink,
    Speaker,
    Sponsor,
    Track,
    session_speakers,
)
from uploadsvc.schemas.events import (
    EventRead,
    ImportJobList,
    MicrolocationRead,
    Ref,
    SessionRead,
    SessionTypeRead,
    SpeakerRead,
    SponsorRead,
    TaskRead,
    TrackRead,
    as_dict,
)
from uploadsvc.security import Principal

_COUNTED: dict[str, Any] = {
    "sessions": Session,
    "speakers": Speaker,
    "tracks": Track,
    "microlocations": Microlocation,
    "session_types": SessionType,
    "sponsors": Sponsor,
}


def _visible(principal: Principal, owner_column: Any) -> Any:
    return (
        owner_column == principal.user_id if not principal.is_admin else owner_column.is_not(None)
    )


def task_read(job: ImportJob) -> TaskRead:
    return TaskRead.model_validate(
        {
            "task_id": job.id,
            "state": job.state,
            "progress": job.progress,
            "result": job.result,
            "error": job.error,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
        }
    )


async def get_task(session: AsyncSession, *, principal: Principal, task_id: uuid.UUID) -> TaskRead:
    job = await session.scalar(
        select(ImportJob).where(ImportJob.id == task_id, _visible(principal, ImportJob.owner_id))
    )
    if job is None:
        raise NotFound("No such task.", code="task_not_found")
    return task_read(job)


async def list_import_jobs(session: AsyncSession, *, principal: Principal) -> ImportJobList:
    jobs = await session.scalars(
        select(ImportJob)
        .where(ImportJob.owner_id == principal.user_id)
        .order_by(ImportJob.created_at.desc())
        .limit(200)
    )
    return ImportJobList(items=[task_read(job) for job in jobs])


async def get_event(session: AsyncSession, *, principal: Principal, event_id: uuid.UUID) -> Event:
    event = await session.scalar(
        select(Event).where(Event.id == event_id, _visible(principal, Event.owner_id))
    )
    if event is None:
        raise NotFound("No such event.", code="event_not_found")
    return event


async def event_read(session: AsyncSession, event: Event) -> EventRead:
    counts = {}
    for name, model in _COUNTED.items():
        counts[name] = int(
            await session.scalar(
                select(func.count()).select_from(model).where(model.event_id == event.id)
            )
            or 0
        )
    links = await session.scalars(select(SocialLink).where(SocialLink.event_id == event.id))
    return EventRead.model_validate(
        as_dict(event, EventRead)
        | {
            "counts": counts,
            "social_links": [{"name": link.name, "link": link.link} for link in links],
        }
    )


async def _rows(session: AsyncSession, model: Any, event: Event) -> list[Any]:
    return list(
        await session.scalars(
            select(model).where(model.event_id == event.id).order_by(model.source_id, model.id)
        )
    )


async def tracks(session: AsyncSession, event: Event) -> list[TrackRead]:
    return [
        TrackRead.model_validate(as_dict(r, TrackRead)) for r in await _rows(session, Track, event)
    ]


async def microlocations(session: AsyncSession, event: Event) -> list[MicrolocationRead]:
    rows = await _rows(session, Microlocation, event)
    return [MicrolocationRead.model_validate(as_dict(r, MicrolocationRead)) for r in rows]


async def session_types(session: AsyncSession, event: Event) -> list[SessionTypeRead]:
    rows = await _rows(session, SessionType, event)
    return [SessionTypeRead.model_validate(as_dict(r, SessionTypeRead)) for r in rows]


async def sponsors(session: AsyncSession, event: Event) -> list[SponsorRead]:
    rows = await _rows(session, Sponsor, event)
    return [SponsorRead.model_validate(as_dict(r, SponsorRead)) for r in rows]


async def _links(session: AsyncSession, event: Event) -> list[tuple[uuid.UUID, uuid.UUID]]:
    result = await session.execute(
        select(session_speakers.c.session_id, session_speakers.c.speaker_id)
        .join(Session, Session.id == session_speakers.c.session_id)
        .where(Session.event_id == event.id)
    )
    return [(row[0], row[1]) for row in result]


async def speakers(session: AsyncSession, event: Event) -> list[SpeakerRead]:
    by_speaker: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for session_id, speaker_id in await _links(session, event):
        by_speaker[speaker_id].append(session_id)
    return [
        SpeakerRead.model_validate(
            as_dict(r, SpeakerRead) | {"session_ids": sorted(by_speaker[r.id])}
        )
        for r in await _rows(session, Speaker, event)
    ]


async def sessions(session: AsyncSession, event: Event) -> list[SessionRead]:
    by_session: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for session_id, speaker_id in await _links(session, event):
        by_session[session_id].append(speaker_id)
    names: dict[uuid.UUID, str] = {}
    for model in (Track, Microlocation, SessionType):
        for row_id, name in await session.execute(
            select(model.id, model.name).where(model.event_id == event.id)
        ):
            names[row_id] = name

    def ref(row_id: uuid.UUID | None) -> Ref | None:
        return Ref(id=row_id, name=names[row_id]) if row_id in names else None

    return [
        SessionRead.model_validate(
            as_dict(r, SessionRead)
            | {
                "track": ref(r.track_id),
                "microlocation": ref(r.microlocation_id),
                "session_type": ref(r.session_type_id),
                "speaker_ids": sorted(by_session[r.id]),
            }
        )
        for r in await _rows(session, Session, event)
    ]
