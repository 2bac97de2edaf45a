"""Presigned uploads: request a URL, re-issue it, confirm what storage received."""

from __future__ import annotations

from fastapi import APIRouter, status

from uploadsvc.deps import OwnedUpload, PrincipalDep, SessionDep, SettingsDep, StorageDep
from uploadsvc.errors import (
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    StorageError,
    Unprocessable,
    UnsupportedMediaType,
    error_responses,
)
from uploadsvc.schemas import ConfirmedFile, ConfirmRequest, UploadUrlRequest, UploadUrlResponse
from uploadsvc.services import uploads as service

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])

_CONFIRM_ERRORS = error_responses(NotFound, Conflict, Gone, Unprocessable, StorageError)


@router.post(
    "/request-url",
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(
        BadRequest, PayloadTooLarge, UnsupportedMediaType, Unprocessable, StorageError
    ),
)
async def request_upload_url(
    body: UploadUrlRequest,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> UploadUrlResponse:
    """Record a pending upload and return a URL that accepts exactly the declared bytes."""
    return await service.request_upload_url(
        session, storage, settings, principal=principal, request=body
    )


@router.post(
    "/{upload_id}/url",
    responses=error_responses(NotFound, Conflict, Gone, Unprocessable, StorageError),
)
async def reissue_upload_url(
    upload: OwnedUpload, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> UploadUrlResponse:
    """A fresh upload URL for a still-pending upload (slow link, expired URL)."""
    return await service.reissue_upload_url(session, storage, settings, upload=upload)


@router.post("/confirm", responses=_CONFIRM_ERRORS)
async def confirm_upload_by_key(
    body: ConfirmRequest,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    principal: PrincipalDep,
) -> ConfirmedFile:
    """Check the uploaded object (size, type, checksum, magic bytes) and record it.

    Idempotent: a repeated confirm returns the same body. 409 `object_missing`
    means the PUT has not arrived yet (retry); 422 means the object was
    rejected and deleted.
    """
    upload = await service.find_upload(session, principal=principal, file_key=body.file_key)
    return await service.confirm_upload(session, storage, settings, upload=upload)


@router.post("/{upload_id}/confirm", responses=_CONFIRM_ERRORS)
async def confirm_upload(
    upload: OwnedUpload, session: SessionDep, storage: StorageDep, settings: SettingsDep
) -> ConfirmedFile:
    """Confirm by upload id; same checks and answers as `POST /v1/uploads/confirm`."""
    return await service.confirm_upload(session, storage, settings, upload=upload)
