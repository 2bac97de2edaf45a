"""Event imports (202 + a task to poll) and the imported events (docs/api.md, "Event import")."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from uploadsvc.bodies import FORM_OVERHEAD_BYTES, refuse_honest_oversize
from uploadsvc.deps import PrincipalDep, ResourcesDep, SessionDep
from uploadsvc.errors import (
    NotFound,
    Unprocessable,
    error_responses,
)
from uploadsvc.formdata import FormReader
from uploadsvc.models.events import Event
from uploadsvc.routers.openapi import BINARY, STREAMED_UPLOAD_ERRORS, form_data_body
from uploadsvc.schemas.events import (
    EventRead,
    ImportByKey,
    ImportJobList,
    MicrolocationRead,
    Page,
    SessionRead,
    SessionTypeRead,
    SpeakerRead,
    SponsorRead,
    TaskAccepted,
    TaskRead,
    TrackRead,
)
from uploadsvc.services import events as service
from uploadsvc.services import imports

router = APIRouter(prefix="/v1", tags=["events"])


def _accepted(job_id: uuid.UUID) -> TaskAccepted:
    return TaskAccepted(task_id=job_id, task_url=f"/v1/tasks/{job_id}")


@router.post(
    "/events/import/json",
    status_code=status.HTTP_202_ACCEPTED,
    responses=STREAMED_UPLOAD_ERRORS,
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
    responses=error_responses(NotFound, Unprocessable),
)
async def import_event_upload(
    body: ImportByKey, session: SessionDep, resources: ResourcesDep, principal: PrincipalDep
) -> TaskAccepted:
    """Import a confirmed `event-import` upload (uploaded through a presigned URL)."""
    job = await imports.submit_import(
        session, resources, principal=principal, file_key=body.file_key
    )
    return _accepted(job.id)


@router.get("/tasks/{task_id}", tags=["tasks"], responses=error_responses(NotFound))
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


@router.get("/events/{event_id}", responses=_404)
async def get_event(event: OwnedEvent, session: SessionDep, resources: ResourcesDep) -> EventRead:
    return await service.event_read(session, resources, event)


@router.get("/events/{event_id}/sessions", responses=_404)
async def list_event_sessions(
    event: OwnedEvent, session: SessionDep, resources: ResourcesDep
) -> Page[SessionRead]:
    return Page[SessionRead](items=await service.sessions(session, resources, event))


@router.get("/events/{event_id}/speakers", responses=_404)
async def list_event_speakers(
    event: OwnedEvent, session: SessionDep, resources: ResourcesDep
) -> Page[SpeakerRead]:
    return Page[SpeakerRead](items=await service.speakers(session, resources, event))


@router.get("/events/{event_id}/tracks", responses=_404)
async def list_event_tracks(event: OwnedEvent, session: SessionDep) -> Page[TrackRead]:
    return Page[TrackRead](items=await service.tracks(session, event))


@router.get("/events/{event_id}/microlocations", responses=_404)
async def list_event_microlocations(
    event: OwnedEvent, session: SessionDep
) -> Page[MicrolocationRead]:
    return Page[MicrolocationRead](items=await service.microlocations(session, event))


@router.get("/events/{event_id}/sponsors", responses=_404)
async def list_event_sponsors(
    event: OwnedEvent, session: SessionDep, resources: ResourcesDep
) -> Page[SponsorRead]:
    return Page[SponsorRead](items=await service.sponsors(session, resources, event))


@router.get("/events/{event_id}/session-types", responses=_404)
async def list_event_session_types(event: OwnedEvent, session: SessionDep) -> Page[SessionTypeRead]:
    return Page[SessionTypeRead](items=await service.session_types(session, event))
