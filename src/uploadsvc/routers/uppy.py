"""The routes ``@uppy/aws-s3`` calls when given ``endpoint: <base>/v1``.

Uppy's own names and spellings (``uploadId``, ``PartNumber``...), so an
unmodified Uppy works with nothing but ``endpoint`` and an auth header
(its ``headers`` option). See ``services/uppy.py`` for what each one does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from uploadsvc.deps import PrincipalDep, SessionDep, SettingsDep, StorageDep
from uploadsvc.errors import (
    BadRequest,
    PayloadTooLarge,
    StorageError,
    UnsupportedMediaType,
    error_responses,
)
from uploadsvc.models.uploads import Upload
from uploadsvc.routers.openapi import PART_URL_ERRORS
from uploadsvc.schemas.uppy import (
    UppyAborted,
    UppyCompleted,
    UppyCompleteRequest,
    UppyCreateMultipart,
    UppyMultipartUpload,
    UppyPart,
    UppySignedPart,
    UppySignedParts,
    UppyUploadParameters,
)
from uploadsvc.services import uppy as service
from uploadsvc.services.uploads import UndeclaredSize
from uploadsvc.storage.base import MAX_PART_NUMBER

router = APIRouter(prefix="/v1/s3", tags=["uppy"])

_START_ERRORS = error_responses(BadRequest, PayloadTooLarge, UnsupportedMediaType, StorageError)


async def get_uppy_upload(
    session: SessionDep,
    principal: PrincipalDep,
    multipart_upload_id: Annotated[str, Path(alias="uploadId", max_length=1024)],
    key: Annotated[str, Query(min_length=1, max_length=1024)],
) -> Upload:
    """The caller's upload named by Uppy's key and ``uploadId`` (storage's id); 404 otherwise."""
    return await service.find_multipart(
        session, principal=principal, key=key, multipart_upload_id=multipart_upload_id
    )


UppyUpload = Annotated[Upload, Depends(get_uppy_upload)]


@router.get("/params", responses=_START_ERRORS)
async def uppy_upload_parameters(
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
    filename: Annotated[str, Query(min_length=1, max_length=1024)],
    content_type: Annotated[str, Query(alias="type", min_length=1, max_length=255)],
    purpose: Annotated[str | None, Query(alias="metadata[purpose]")] = None,
) -> UppyUploadParameters:
    """Parameters of a single-request upload (S3: a presigned POST limited to the profile)."""
    return await service.upload_parameters(
        session,
        storage,
        settings,
        principal=principal,
        file=UndeclaredSize(filename, content_type, service.purpose_of(purpose)),
    )


@router.post("/multipart", responses=_START_ERRORS)
async def uppy_create_multipart_upload(
    body: UppyCreateMultipart,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> UppyMultipartUpload:
    """Start a multipart upload; the service chooses the key."""
    return await service.create_multipart_upload(
        session,
        storage,
        settings,
        principal=principal,
        file=UndeclaredSize(
            body.filename, body.type, service.purpose_of(body.metadata.get("purpose"))
        ),
    )


# Declared before /{partNumber}, which would otherwise take "batch".
@router.get("/multipart/{uploadId}/batch", responses=PART_URL_ERRORS)
async def uppy_sign_parts_batch(
    upload: UppyUpload,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    part_numbers: Annotated[str, Query(alias="partNumbers", max_length=60000)],
) -> UppySignedParts:
    """URLs for several parts at once (`partNumbers=1,2,3`)."""
    return await service.sign_parts_batch(
        session, storage, settings, upload=upload, part_numbers=part_numbers
    )


@router.get("/multipart/{uploadId}/{partNumber}", responses=PART_URL_ERRORS)
async def uppy_sign_part(
    upload: UppyUpload,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    part_number: Annotated[int, Path(alias="partNumber", ge=1, le=MAX_PART_NUMBER)],
) -> UppySignedPart:
    """A presigned PUT for one part."""
    return await service.sign_part(
        session, storage, settings, upload=upload, part_number=part_number
    )


@router.get("/multipart/{uploadId}", responses=PART_URL_ERRORS)
async def uppy_list_parts(upload: UppyUpload, storage: StorageDep) -> list[UppyPart]:
    """The parts storage has received (Uppy resumes from these)."""
    return await service.list_parts(storage, upload=upload)


@router.post("/multipart/{uploadId}/complete", responses=PART_URL_ERRORS)
async def uppy_complete_multipart_upload(
    body: UppyCompleteRequest,
    upload: UppyUpload,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> UppyCompleted:
    """Join the parts and confirm the file; `location` is a download URL."""
    return await service.complete(session, storage, settings, upload=upload, parts=body.parts)


@router.delete("/multipart/{uploadId}", responses=PART_URL_ERRORS)
async def uppy_abort_multipart_upload(
    upload: UppyUpload, session: SessionDep, storage: StorageDep
) -> UppyAborted:
    """Abort the upload and free its parts."""
    await service.abort(session, storage, upload=upload)
    return UppyAborted()
