"""The Open Event compatible upload routes: ``/v1/upload/file`` and ``/v1/upload/image``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from uploadsvc.bodies import FORM_OVERHEAD_BYTES, limited, refuse_honest_oversize
from uploadsvc.deps import DirectUploadLimit, PrincipalDep, SessionDep, SettingsDep, StorageDep
from uploadsvc.errors import (
    BadRequest,
)
from uploadsvc.formdata import FormReader
from uploadsvc.routers.openapi import BINARY, STREAMED_UPLOAD_ERRORS, form_data_body, untitled
from uploadsvc.schemas.openevent_uploads import FileUrl, FileUrls, ImageData, OpenEventFileUrl
from uploadsvc.services import openevent_uploads as service

# Also tagged "direct uploads", as before these routes had a router of their own:
# generated clients name their module after the first tag
# (`api.direct_uploads.open_event_upload_file`), and moving them would break those clients.
router = APIRouter(tags=["direct uploads"])

_ERRORS = STREAMED_UPLOAD_ERRORS


ForceLocal = Annotated[
    bool, Query(description="Store on the local backend (400 unless it is the configured one).")
]


def _check_force_local(force_local: bool, backend: str) -> None:
    if force_local and backend != "local":
        raise BadRequest(
            "force_local=true needs the local storage backend, which is not configured.",
            code="force_local_unavailable",
        )


@router.post(
    "/v1/upload/file",
    tags=["open event"],
    responses=_ERRORS,
    dependencies=[DirectUploadLimit],
    response_model=OpenEventFileUrl,
    openapi_extra=form_data_body(
        {"file": BINARY, "files[]": {"type": "array", "items": BINARY}}, []
    ),
)
async def open_event_upload_file(
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    force_local: ForceLocal = False,
) -> FileUrl | FileUrls:
    """Open Event's upload: one `file` → `{"url": ...}`; several `files[]` → `{"url": [...]}`."""
    _check_force_local(force_local, settings.storage_backend)
    limit = (settings.max_attachment_bytes + FORM_OVERHEAD_BYTES) * (service.MAX_FILES_PER_REQUEST)
    refuse_honest_oversize(request.headers.get("content-length"), limit)
    form = FormReader(request.headers.get("content-type"), request.stream(), max_body_bytes=limit)
    urls, several = await service.open_event_files(
        session, storage, settings, principal=principal, form=form
    )
    return FileUrls(url=urls) if several else FileUrl(url=urls[0])


@router.post(
    "/v1/upload/image",
    tags=["open event"],
    responses=_ERRORS,
    dependencies=[DirectUploadLimit],
    openapi_extra={
        "requestBody": {
            "required": True,
            # Untitled, so a generated client names it like the other bodies
            # (`OpenEventUploadImageBody`, not `OpenEventUploadImageImageData`).
            "content": {"application/json": {"schema": untitled(ImageData.model_json_schema())}},
        }
    },
)
async def open_event_upload_image(
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    force_local: ForceLocal = False,
) -> FileUrl:
    """Open Event's image upload: `{"data": "data:image/png;base64,..."}` → `{"url": ...}`."""
    _check_force_local(force_local, settings.storage_backend)
    # Streamed, never held whole (docs/api.md, "Security bounds"): bounded by
    # MAX_IMAGE_BYTES, decoded chunk by chunk, its first bytes checked first.
    limit = service.image_body_limit(settings)
    refuse_honest_oversize(request.headers.get("content-length"), limit)
    url = await service.open_event_image(
        session, storage, settings, principal=principal, body=limited(request.stream(), limit)
    )
    return FileUrl(url=url)
