"""Direct (fallback) uploads: the bytes come through the service.

The handlers take the raw ``Request`` so that the body is read as a stream
(never through FastAPI's ``File``/``Form``, which spool it first); the
request bodies are described for OpenAPI in ``routers/openapi.py``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, status

from uploadsvc.bodies import FORM_OVERHEAD_BYTES, refuse_honest_oversize
from uploadsvc.deps import DirectUploadLimit, PrincipalDep, SessionDep, SettingsDep, StorageDep
from uploadsvc.formdata import FormReader
from uploadsvc.profiles import Purpose, profile_for
from uploadsvc.routers.openapi import BINARY, STREAMED_UPLOAD_ERRORS, form_data_body
from uploadsvc.schemas.files import ConfirmedFile
from uploadsvc.schemas.text import Text
from uploadsvc.services import direct as service

router = APIRouter(tags=["direct uploads"])

_ERRORS = STREAMED_UPLOAD_ERRORS


PurposeQuery = Annotated[
    Purpose,
    Query(description="The upload profile (a `purpose` form field before `file` also works)."),
]


@router.post(
    "/v1/uploads/direct",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    dependencies=[DirectUploadLimit],
    # `purpose` is documented as the query parameter only: a form field counts
    # only before `file`, and generated clients send optional fields after
    # the required ones (openapi-python-client did; the field was then ignored).
    openapi_extra=form_data_body({"file": BINARY}, ["file"]),
)
async def direct_upload(
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    purpose: PurposeQuery = Purpose.ATTACHMENT,
) -> ConfirmedFile:
    """Upload through the service, for clients that cannot reach storage (streamed)."""
    limit = profile_for(settings, purpose).max_bytes + FORM_OVERHEAD_BYTES
    refuse_honest_oversize(request.headers.get("content-length"), limit)
    form = FormReader(request.headers.get("content-type"), request.stream(), max_body_bytes=limit)
    return await service.direct_upload_form(
        session, storage, settings, principal=principal, purpose=purpose, form=form
    )


@router.put(
    "/v1/uploads/direct",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    dependencies=[DirectUploadLimit],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": BINARY}},
        }
    },
)
async def direct_upload_raw(
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    filename: Annotated[Text, Query(min_length=1, max_length=1024)],
    purpose: Annotated[Purpose, Query()] = Purpose.ATTACHMENT,
) -> ConfirmedFile:
    """Upload the request body as the file (mobile clients); its type in Content-Type."""
    refuse_honest_oversize(
        request.headers.get("content-length"), profile_for(settings, purpose).max_bytes
    )
    return await service.direct_upload_raw(
        session,
        storage,
        settings,
        principal=principal,
        purpose=purpose,
        filename=filename,
        content_type=request.headers.get("content-type"),
        body=request.stream(),
    )
