"""Event imports (202 + a task to poll) and the imported events (docs/api.md, "Event import")."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.bodies import FORM_OVERHEAD_BYTES, refuse_honest_oversize
from uploadsvc.deps import ImportLimit, PrincipalDep, ResourcesDep, SessionDep
from uploadsvc.errors import (
    BadRequest,
    NotFound,
    TooManyRequests,
    Unprocessable,
    error_responses,
)
from uploadsvc.formdata import FormReader
from uploadsvc.models.events import Event
from uploadsvc.resources import Resources
from uploadsvc.routers.openapi import BINARY, STREAMED_UPLOAD_ERRORS, form_data_body
from uploadsvc.schemas.events import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    EventRead,
    ImportByKey,
    ImportJobList,
    MicrolocationRead,
    Page,
    PageRequest,
    SessionRead,
    SessionTypeRead,
    SpeakerRead,
    SponsorRead,
    TaskAccepted,
    TaskRead,
    TrackRead,
)
from uploadsvc.schemas.text import Text
from uploadsvc.services import events as service
from uploadsvc.services import imports

router = APIRouter(prefix="/v1", tags=["events"])


def _accepted(job_id: uuid.UUID) -> TaskAccepted:
    return TaskAccepted(task_id=job_id, task_url=f"/v1/tasks/{job_id}")


@router.post(
    "/events/import/json",
    status_code=status.HTTP_202_ACCEPTED,
    responses=STREAMED_UPLOAD_ERRORS,
    dependencies=[ImportLimit],
    openapi_extra=form_data_body({"file": BINARY}, ["file"]),
)
async def import_event_archive(
    request: Request, session: SessionDep, resources: ResourcesDep, principal: PrincipalDep
) -> TaskAccepted:
    """Upload an Open Event zip (streamed to storage) and import it in the background."""
    limit = resources.settings.max_event_import_bytes + FORM_OVERHEAD_BYTES
    refuse_honest_oversize(request.headers.get("content-length"), limit)
    form = FormReader(request.headers.get("content-type"), request.stream(), max_body_bytes=limit)
    job = await imports.submit_archive_upload(session, resources, principal=principal, form=form)
    return _accepted(job.id)


@router.post(
    "/events/import",
    status_code=status.HTTP_202_ACCEPTED,
    responses=error_responses(NotFound, Unprocessable, TooManyRequests),
    dependencies=[ImportLimit],
)
async def import_event_upload(
    body: ImportByKey, session: SessionDep, resources: ResourcesDep, principal: PrincipalDep
) -> TaskAccepted:
    """Import a confirmed `event-import` upload (uploaded through a presigned URL)."""
    job = await imports.submit_import(
        session, resources, principal=principal, file_key=body.file_key
    )
    return _accepted(job.id)


@router.get("/tasks/{task_id:uuid}", tags=["tasks"], responses=error_responses(NotFound))
async def get_task(task_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> TaskRead:
    """An import's state, progress and result or error."""
    return await service.get_import_job(session, principal=principal, job_id=task_id)


@router.get("/import-jobs", tags=["tasks"], responses=error_responses())
async def list_import_jobs(session: SessionDep, principal: PrincipalDep) -> ImportJobList:
    return await service.list_import_jobs(session, principal=principal)


async def _owned_event(event_id: uuid.UUID, session: SessionDep, principal: PrincipalDep) -> Event:
    return await service.get_event(session, principal=principal, event_id=event_id)


OwnedEvent = Annotated[Event, Depends(_owned_event)]
_404 = error_responses(NotFound)


@router.get("/events/{event_id:uuid}", responses=_404)
async def get_event(event: OwnedEvent, session: SessionDep, resources: ResourcesDep) -> EventRead:
    return await service.event_read(session, resources, event)


async def _page_request(
    cursor: Annotated[Text | None, Query(description="`next_cursor` of the previous page.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
) -> PageRequest:
    return PageRequest(cursor=cursor, limit=limit)


PageDep = Annotated[PageRequest, Depends(_page_request)]
_PAGE_ERRORS = error_responses(NotFound, BadRequest)


def _list_route(
    path: str,
    read: type[BaseModel],
    list_page: Callable[[AsyncSession, Resources, Event, PageRequest], Awaitable[Page[Any]]],
) -> None:
    """``GET /events/{event_id}/{path}``: one page of the event's rows of a kind."""

    async def list_rows(
        event: OwnedEvent, session: SessionDep, resources: ResourcesDep, page: PageDep
    ) -> Page[Any]:
        return await list_page(session, resources, event, page)

    router.add_api_route(
        f"/events/{{event_id:uuid}}/{path}",
        list_rows,
        methods=["GET"],
        response_model=Page[read],  # type: ignore[valid-type]
        responses=_PAGE_ERRORS,
        name=f"list_event_{path.replace('-', '_')}",
    )


_list_route("sessions", SessionRead, service.sessions)
_list_route("speakers", SpeakerRead, service.speakers)
_list_route("tracks", TrackRead, service.tracks)
_list_route("microlocations", MicrolocationRead, service.microlocations)
_list_route("sponsors", SponsorRead, service.sponsors)
_list_route("session-types", SessionTypeRead, service.session_types)
