"""Reading imported events and import jobs; everything is visible to its owner only
(and to admins)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.errors import NotFound
from uploadsvc.models.events import (
    Event,
    EventSession,
    ImportJob,
    ImportState,
    Microlocation,
    SessionType,
    Speaker,
    Sponsor,
    Track,
)
from uploadsvc.repository import events as repository
from uploadsvc.repository import imports as jobs
from uploadsvc.repository import owned
from uploadsvc.schemas.events import (
    EventRead,
    ImportJobList,
    MicrolocationRead,
    Page,
    PageRequest,
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

ReadT = TypeVar("ReadT", bound=BaseModel)


def as_task(job: ImportJob) -> TaskRead:
    """An import job as the Open Event-compatible API shows it: a task.

    A failed task's ``result`` is its error's one-line message, where Open
    Event's frontend looks for it; ``error`` keeps the file and record.
    """
    result: object = job.result
    if job.state is ImportState.FAILURE and job.error is not None:
        result = job.error.get("message")
    return TaskRead.model_validate(
        {
            "task_id": job.id,
            "state": job.state,
            "progress": job.progress,
            "result": result,
            "error": job.error,
            "created_at": job.created_at,
            "finished_at": job.finished_at,
        }
    )


async def get_import_job(
    session: AsyncSession, *, principal: Principal, job_id: uuid.UUID
) -> TaskRead:
    job = await owned.get_visible(session, ImportJob, job_id, principal=principal)
    if job is None:
        raise NotFound("No such task.", code="task_not_found")
    return as_task(job)


async def list_import_jobs(session: AsyncSession, *, principal: Principal) -> ImportJobList:
    return ImportJobList(
        items=[as_task(job) for job in await jobs.list_jobs(session, owner_id=principal.user_id)]
    )


async def get_event(session: AsyncSession, *, principal: Principal, event_id: uuid.UUID) -> Event:
    event = await owned.get_visible(session, Event, event_id, principal=principal)
    if event is None:
        raise NotFound("No such event.", code="event_not_found")
    return event


async def event_read(session: AsyncSession, event: Event) -> EventRead:
    counts = await repository.count_rows(session, event_id=event.id)
    links = await repository.social_links(session, event_id=event.id)
    return EventRead.model_validate(
        as_dict(event, EventRead)
        | {
            "counts": counts,
            "social_links": [{"name": link.name, "link": link.link} for link in links],
        }
    )


async def _page_of(
    session: AsyncSession, event: Event, model: type[Any], read: type[ReadT], page: PageRequest
) -> Page[ReadT]:
    """A page of the event's rows of a kind that needs no joins, as their API bodies."""
    rows, next_cursor = await _rows(session, event, model, page)
    return Page[read](  # type: ignore[valid-type]
        items=[read.model_validate(as_dict(row, read)) for row in rows], next_cursor=next_cursor
    )


async def _rows(
    session: AsyncSession, event: Event, model: type[Any], page: PageRequest
) -> tuple[list[Any], str | None]:
    return await repository.list_rows(
        session, model, event_id=event.id, cursor=page.cursor, limit=page.limit
    )


async def tracks(session: AsyncSession, event: Event, page: PageRequest) -> Page[TrackRead]:
    return await _page_of(session, event, Track, TrackRead, page)


async def microlocations(
    session: AsyncSession, event: Event, page: PageRequest
) -> Page[MicrolocationRead]:
    return await _page_of(session, event, Microlocation, MicrolocationRead, page)


async def session_types(
    session: AsyncSession, event: Event, page: PageRequest
) -> Page[SessionTypeRead]:
    return await _page_of(session, event, SessionType, SessionTypeRead, page)


async def sponsors(session: AsyncSession, event: Event, page: PageRequest) -> Page[SponsorRead]:
    return await _page_of(session, event, Sponsor, SponsorRead, page)


async def speakers(session: AsyncSession, event: Event, page: PageRequest) -> Page[SpeakerRead]:
    rows, next_cursor = await _rows(session, event, Speaker, page)
    by_speaker: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    links = await repository.speaker_links(session, speaker_ids=[row.id for row in rows])
    for session_id, speaker_id in links:
        by_speaker[speaker_id].append(session_id)
    items = [
        SpeakerRead.model_validate(
            as_dict(row, SpeakerRead) | {"session_ids": sorted(by_speaker[row.id])}
        )
        for row in rows
    ]
    return Page[SpeakerRead](items=items, next_cursor=next_cursor)


async def sessions(session: AsyncSession, event: Event, page: PageRequest) -> Page[SessionRead]:
    rows, next_cursor = await _rows(session, event, EventSession, page)
    by_session: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    links = await repository.speaker_links(session, session_ids=[row.id for row in rows])
    for session_id, speaker_id in links:
        by_session[session_id].append(speaker_id)
    referenced = {
        ref_id
        for row in rows
        for ref_id in (row.track_id, row.microlocation_id, row.session_type_id)
        if ref_id is not None
    }
    names = await repository.reference_names(session, ids=referenced)

    def ref(row_id: uuid.UUID | None) -> Ref | None:
        return Ref(id=row_id, name=names[row_id]) if row_id in names else None

    items = [
        SessionRead.model_validate(
            as_dict(row, SessionRead)
            | {
                "track": ref(row.track_id),
                "microlocation": ref(row.microlocation_id),
                "session_type": ref(row.session_type_id),
                "speaker_ids": sorted(by_session[row.id]),
            }
        )
        for row in rows
    ]
    return Page[SessionRead](items=items, next_cursor=next_cursor)
