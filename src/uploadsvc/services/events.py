"""Reading imported events and import jobs; everything is visible to its owner only
(and to admins)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
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
from uploadsvc.resources import Resources
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
from uploadsvc.schemas.images import ImageVariantRead
from uploadsvc.security import Principal
from uploadsvc.services import images
from uploadsvc.storage.base import GetGrant

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


async def _with_media_urls(
    resources: Resources,
    body: dict[str, Any],
    variants: dict[str, list[ImageVariantRead]] | None = None,
) -> dict[str, Any]:
    """Each stored medium's ``*_url``: a GET URL signed for its ``*_key``; and its
    image variants (``*_variants``, from ``images.media_variants``).

    A medium has a key (our copy of an archive path) or a URL (an external
    link, kept as the archive gave it), never both. The URL is signed without
    response headers, so storage serves the type the import checked and
    stored (docs/api.md, "Event import").
    """
    expires_in = resources.settings.download_url_expires_seconds
    for field, key in list(body.items()):
        url_field = field.removesuffix("_key") + "_url"
        if field.endswith("_key") and key and body.get(url_field) is None:
            body[url_field] = await resources.storage.presign_get(
                GetGrant(key, expires_in=expires_in)
            )
            body[field.removesuffix("_key") + "_variants"] = (variants or {}).get(key, [])
    return body


async def event_read(session: AsyncSession, resources: Resources, event: Event) -> EventRead:
    counts = await repository.count_rows(session, event_id=event.id)
    links = await repository.social_links(session, event_id=event.id)
    return EventRead.model_validate(
        await _with_media_urls(
            resources,
            as_dict(event, EventRead),
            await images.media_variants(session, resources, event_id=event.id),
        )
        | {
            "counts": counts,
            "social_links": [{"name": link.name, "link": link.link} for link in links],
        }
    )


async def _page_of(
    session: AsyncSession,
    resources: Resources,
    event: Event,
    model: type[Any],
    read: type[ReadT],
    page: PageRequest,
) -> Page[ReadT]:
    """A page of the event's rows of a kind that needs no joins, as their API bodies
    (with their media's URLs signed and variants listed, for kinds that have media)."""
    rows, next_cursor = await _rows(session, event, model, page)
    bodies = [as_dict(row, read) for row in rows]
    if any(field.endswith("_key") for field in read.model_fields):
        variants = await images.media_variants(session, resources, event_id=event.id)
        bodies = [await _with_media_urls(resources, body, variants) for body in bodies]
    return Page[read](  # type: ignore[valid-type]
        items=[read.model_validate(body) for body in bodies], next_cursor=next_cursor
    )


async def _rows(
    session: AsyncSession, event: Event, model: type[Any], page: PageRequest
) -> tuple[list[Any], str | None]:
    return await repository.list_rows(
        session, model, event_id=event.id, cursor=page.cursor, limit=page.limit
    )


def _plain_kind(
    model: type[Any], read: type[ReadT]
) -> Callable[[AsyncSession, Resources, Event, PageRequest], Awaitable[Page[ReadT]]]:
    """The page reader of a kind whose rows need no joins."""

    async def page_of(
        session: AsyncSession, resources: Resources, event: Event, page: PageRequest
    ) -> Page[ReadT]:
        return await _page_of(session, resources, event, model, read, page)

    return page_of


tracks = _plain_kind(Track, TrackRead)
microlocations = _plain_kind(Microlocation, MicrolocationRead)
session_types = _plain_kind(SessionType, SessionTypeRead)
sponsors = _plain_kind(Sponsor, SponsorRead)


async def speakers(
    session: AsyncSession, resources: Resources, event: Event, page: PageRequest
) -> Page[SpeakerRead]:
    rows, next_cursor = await _rows(session, event, Speaker, page)
    by_speaker: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    links = await repository.speaker_links(session, speaker_ids=[row.id for row in rows])
    for session_id, speaker_id in links:
        by_speaker[speaker_id].append(session_id)
    variants = await images.media_variants(session, resources, event_id=event.id)
    items = [
        SpeakerRead.model_validate(
            await _with_media_urls(resources, as_dict(row, SpeakerRead), variants)
            | {"session_ids": sorted(by_speaker[row.id])}
        )
        for row in rows
    ]
    return Page[SpeakerRead](items=items, next_cursor=next_cursor)


async def sessions(
    session: AsyncSession, resources: Resources, event: Event, page: PageRequest
) -> Page[SessionRead]:
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
            await _with_media_urls(resources, as_dict(row, SessionRead))
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
