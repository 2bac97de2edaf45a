"""Direct (fallback) uploads and the Open Event compatible upload routes.

The handlers take the raw ``Request`` so that the body is read as a stream
(never through FastAPI's ``File``/``Form``, which spool it first); the
request bodies are described for OpenAPI by hand.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, Field, ValidationError

from uploadsvc.deps import PrincipalDep, SessionDep, SettingsDep, StorageDep
from uploadsvc.errors import (
    BadRequest,
    PayloadTooLarge,
    StorageError,
    Unprocessable,
    UnsupportedMediaType,
    error_responses,
)
from uploadsvc.multipart import FormReader
from uploadsvc.profiles import Purpose, profile_for
from uploadsvc.schemas import ConfirmedFile, OpenEventFileUrl
from uploadsvc.services import direct as service

router = APIRouter(tags=["direct uploads"])

_ERRORS = error_responses(
    BadRequest, PayloadTooLarge, UnsupportedMediaType, Unprocessable, StorageError
)


def multipart_body(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": fields, "required": required}
                }
            },
        }
    }


_BINARY = {"type": "string", "format": "binary"}
PurposeQuery = Annotated[
    Purpose,
    Query(description="The upload profile (a `purpose` form field before `file` also works)."),
]


@router.post(
    "/v1/uploads/direct",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    # `purpose` is documented as the query parameter only: a form field counts
    # only before `file`, and generated clients send optional fields after
    # the required ones (openapi-python-client did; the field was then ignored).
    openapi_extra=multipart_body({"file": _BINARY}, ["file"]),
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
    limit = profile_for(settings, purpose).max_bytes + service.MULTIPART_OVERHEAD_BYTES
    service.refuse_honest_oversize(request.headers.get("content-length"), limit)
    form = FormReader(request.headers.get("content-type"), request.stream())
    return await service.direct_upload_form(
        session, storage, settings, principal=principal, purpose=purpose, form=form
    )


@router.put(
    "/v1/uploads/direct",
    status_code=status.HTTP_201_CREATED,
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/octet-stream": {"schema": _BINARY}},
        }
    },
)
async def direct_upload_raw(
    request: Request,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    filename: Annotated[str, Query(min_length=1, max_length=1024)],
    purpose: Annotated[Purpose, Query()] = Purpose.ATTACHMENT,
) -> ConfirmedFile:
    """Upload the request body as the file (mobile clients); its type in Content-Type."""
    service.refuse_honest_oversize(
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


class FileUrl(BaseModel):
    url: str = Field(description="Works without auth until it expires.")


class FileUrls(BaseModel):
    url: list[str]


class ImageData(BaseModel):
    data: str = Field(description="A `data:image/...;base64,...` URI.")


def _untitled(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key != "title"}


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
    response_model=OpenEventFileUrl,
    openapi_extra=multipart_body(
        {"file": _BINARY, "files[]": {"type": "array", "items": _BINARY}}, []
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
    limit = (settings.max_attachment_bytes + service.MULTIPART_OVERHEAD_BYTES) * (
        service.MAX_FILES_PER_REQUEST
    )
    service.refuse_honest_oversize(request.headers.get("content-length"), limit)
    form = FormReader(request.headers.get("content-type"), request.stream())
    urls, several = await service.open_event_files(
        session, storage, settings, principal=principal, form=form
    )
    return FileUrls(url=urls) if several else FileUrl(url=urls[0])


@router.post(
    "/v1/upload/image",
    tags=["open event"],
    responses=_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            # Untitled, so a generated client names it like the other bodies
            # (`OpenEventUploadImageBody`, not `OpenEventUploadImageImageData`).
            "content": {"application/json": {"schema": _untitled(ImageData.model_json_schema())}},
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
    # base64 is 4/3 of the bytes; the JSON around it is small.
    limit = settings.max_attachment_bytes * 4 // 3 + 4096
    raw = await service.read_limited(request.stream(), limit)
    try:
        image = ImageData.model_validate_json(raw)
    except ValidationError:
        raise Unprocessable(
            'The body must be {"data": "data:image/...;base64,..."}.', code="validation_error"
        ) from None
    url = await service.open_event_image(
        session, storage, settings, principal=principal, data_uri=image.data
    )
    return FileUrl(url=url)
