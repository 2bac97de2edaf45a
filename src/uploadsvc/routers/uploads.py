"""Presigned uploads: request a URL, re-issue it, confirm what storage received."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from uploadsvc.deps import (
    OwnedUpload,
    PrincipalDep,
    ResourcesDep,
    SessionDep,
    SettingsDep,
    StorageDep,
)
from uploadsvc.errors import Conflict, NotFound, StorageError, error_responses
from uploadsvc.routers.openapi import (
    DECLARED_UPLOAD_ERRORS,
    PART_URL_ERRORS,
    PENDING_UPLOAD_ERRORS,
)
from uploadsvc.schemas.files import ConfirmedFile
from uploadsvc.schemas.multipart_uploads import (
    CompleteRequest,
    MultipartUploadRequest,
    MultipartUploadResponse,
    PartUrls,
    PartUrlsRequest,
    UploadedParts,
)
from uploadsvc.schemas.uploads import ConfirmRequest, UploadUrlRequest, UploadUrlResponse
from uploadsvc.services import multipart_uploads
from uploadsvc.services import uploads as service

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post(
    "/request-url",
    status_code=status.HTTP_201_CREATED,
    responses=DECLARED_UPLOAD_ERRORS,
)
async def request_upload_url(
    body: UploadUrlRequest, resources: ResourcesDep, principal: PrincipalDep
) -> UploadUrlResponse:
    """Record a pending upload and return a URL that accepts exactly the declared bytes."""
    return await service.request_upload_url(
        resources.engine, resources.storage, resources.settings, principal=principal, request=body
    )


@router.post(
    "/{upload_id}/url",
    responses=PENDING_UPLOAD_ERRORS,
)
async def reissue_upload_url(
    upload: OwnedUpload, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> UploadUrlResponse:
    """A fresh upload URL for a still-pending upload (slow link, expired URL)."""
    return await service.reissue_upload_url(session, storage, settings, upload=upload)


@router.post("/confirm", responses=PENDING_UPLOAD_ERRORS)
async def confirm_upload_by_key(
    body: ConfirmRequest, resources: ResourcesDep, session: SessionDep, principal: PrincipalDep
) -> ConfirmedFile:
    """Check the uploaded object (size, type, checksum, magic bytes) and record it.

    Idempotent: a repeated confirm returns the same body. 409 `object_missing`
    means the PUT has not arrived yet (retry); 422 means the object was
    rejected and deleted.
    """
    return await service.confirm_by_key(
        resources.engine,
        session,
        resources.storage,
        resources.settings,
        principal=principal,
        file_key=body.file_key,
    )


@router.post("/{upload_id}/confirm", responses=PENDING_UPLOAD_ERRORS)
async def confirm_upload(
    upload: OwnedUpload, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> ConfirmedFile:
    """Confirm by upload id; same checks and answers as `POST /v1/uploads/confirm`."""
    return await service.confirm_upload(session, storage, settings, upload=upload)


@router.post(
    "/multipart",
    status_code=status.HTTP_201_CREATED,
    responses=DECLARED_UPLOAD_ERRORS,
)
async def start_multipart_upload(
    body: MultipartUploadRequest,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> MultipartUploadResponse:
    """Start a large upload in parts: one presigned PUT per part, each for its exact size."""
    return await multipart_uploads.start_multipart_upload(
        session, storage, settings, principal=principal, request=body
    )


@router.get(
    "/{upload_id}/parts",
    responses=PENDING_UPLOAD_ERRORS,
)
async def list_uploaded_parts(upload: OwnedUpload, storage: StorageDep) -> UploadedParts:
    """The parts storage has received, so a client can resume after a crash."""
    return await multipart_uploads.list_uploaded_parts(storage, upload=upload)


@router.post(
    "/{upload_id}/parts/urls",
    responses=PART_URL_ERRORS,
)
async def sign_upload_parts(
    body: PartUrlsRequest,
    upload: OwnedUpload,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> PartUrls:
    """Fresh URLs for some parts of a multipart upload (resuming, or URLs expired)."""
    return await multipart_uploads.sign_parts(
        session, storage, settings, upload=upload, part_numbers=body.part_numbers
    )


@router.post("/{upload_id}/complete", responses=PENDING_UPLOAD_ERRORS)
async def complete_multipart_upload(
    body: CompleteRequest,
    upload: OwnedUpload,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
) -> ConfirmedFile:
    """Join the uploaded parts, then check and record the file as confirm does.

    422 `invalid_parts`: a listed part is missing, has another ETag or is too
    small (the upload stays open: fix the list and complete again); other 422s
    mean the object was rejected and deleted.
    """
    return await multipart_uploads.complete_multipart_upload(
        session, storage, settings, upload=upload, parts=body.parts
    )


@router.delete(
    "/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(NotFound, Conflict, StorageError),
)
async def abort_upload(upload: OwnedUpload, session: SessionDep, storage: StorageDep) -> None:
    """Cancel a pending upload: its parts or object are removed from storage."""
    await service.abort_upload(session, storage, upload=upload)
