"""Uppy's S3 protocol: what ``@uppy/aws-s3`` calls when given an ``endpoint``.

Uppy (the browser file uploader) asks its server for upload parameters and
part URLs under ``{endpoint}/s3/...`` (the protocol of Uppy's Companion
server) and then uploads straight to storage. Here those requests map onto
the service's own uploads: every key is chosen by the service (never by the
filename), every key a client names must belong to one of the caller's
pending uploads (a foreign or made-up key answers 404, so nothing arbitrary
is ever signed), and a completed upload is confirmed like any other.

Uppy does not send the file's size, so these uploads have no declared size:
storage enforces the profile's maximum for a single request (the POST
policy's ``content-length-range``); a multipart one is held to the parts a
file within the maximum can have and to an absolute lifetime
(``multipart_uploads``); confirm checks and records the stored size.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.config import Settings
from uploadsvc.errors import BadRequest, NotFound
from uploadsvc.models.uploads import Upload
from uploadsvc.profiles import Purpose, profile_for
from uploadsvc.repository import uploads as repository
from uploadsvc.schemas.multipart_uploads import CompletedPart
from uploadsvc.schemas.uppy import (
    UppyCompleted,
    UppyMultipartUpload,
    UppyPart,
    UppySignedPart,
    UppySignedParts,
    UppyUploadParameters,
)
from uploadsvc.security import Principal
from uploadsvc.services import multipart_uploads
from uploadsvc.services.uploads import UndeclaredSize, abort_upload, declare_upload
from uploadsvc.storage import Storage
from uploadsvc.storage.base import MAX_PART_NUMBER


def purpose_of(value: object) -> Purpose:
    """The purpose a client put in Uppy's metadata (``meta.purpose``); attachment by default."""
    if value is None or value == "":
        return Purpose.ATTACHMENT
    try:
        return Purpose(str(value))
    except ValueError:
        choices = ", ".join(purpose.value for purpose in Purpose)
        raise BadRequest(
            f"Unknown purpose {value!r}; use one of {choices}.", code="invalid_purpose"
        ) from None


async def upload_parameters(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    file: UndeclaredSize,
) -> UppyUploadParameters:
    """``GET /s3/params``: one request that uploads a small file (S3: a POST policy)."""
    upload = declare_upload(settings, principal=principal, file=file)
    await repository.add(session, upload)
    presigned = await storage.presign_browser_upload(
        upload.file_key,
        content_type=upload.content_type,
        max_size=profile_for(settings, file.purpose).max_bytes,
        expires_in=settings.upload_url_expires_seconds,
    )
    return UppyUploadParameters(
        method=presigned.method,
        url=presigned.url,
        fields=presigned.fields,
        headers=presigned.headers,
        expires=settings.upload_url_expires_seconds,
        key=upload.file_key,
    )


async def create_multipart_upload(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    file: UndeclaredSize,
) -> UppyMultipartUpload:
    """``POST /s3/multipart``: start a multipart upload at a key the service chooses."""
    upload = declare_upload(settings, principal=principal, file=file)
    await multipart_uploads.start_in_storage(session, storage, upload)
    assert upload.multipart_upload_id is not None
    return UppyMultipartUpload(key=upload.file_key, uploadId=upload.multipart_upload_id)


async def find_multipart(
    session: AsyncSession, *, principal: Principal, key: str, multipart_upload_id: str
) -> Upload:
    """The caller's upload that Uppy names by key and storage's multipart upload id; else 404."""
    upload = await repository.get_visible_multipart(
        session, principal=principal, file_key=key, multipart_upload_id=multipart_upload_id
    )
    if upload is None:
        raise NotFound("No such upload.", code="upload_not_found")
    return upload


async def sign_part(
    session: AsyncSession, storage: Storage, settings: Settings, *, upload: Upload, part_number: int
) -> UppySignedPart:
    """``GET /s3/multipart/{uploadId}/{partNumber}``."""
    signed = await multipart_uploads.sign_parts(
        session, storage, settings, upload=upload, part_numbers=[part_number]
    )
    return UppySignedPart(url=signed.parts[0].url, expires=signed.expires_in)


async def sign_parts_batch(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    upload: Upload,
    part_numbers: str,
) -> UppySignedParts:
    """``GET /s3/multipart/{uploadId}/batch?partNumbers=1,2,3`` (older Uppy versions)."""
    try:
        numbers = [int(number) for number in part_numbers.split(",") if number.strip()]
    except ValueError:
        raise BadRequest(
            "partNumbers must be comma-separated numbers.", code="invalid_part_number"
        ) from None
    if not numbers or len(numbers) > MAX_PART_NUMBER:
        raise BadRequest("partNumbers names no parts.", code="invalid_part_number")
    signed = await multipart_uploads.sign_parts(
        session, storage, settings, upload=upload, part_numbers=numbers
    )
    return UppySignedParts(presignedUrls={str(part.part_number): part.url for part in signed.parts})


async def list_parts(storage: Storage, *, upload: Upload) -> list[UppyPart]:
    """``GET /s3/multipart/{uploadId}``: what storage has, in Uppy's (S3's) spelling."""
    uploaded = await multipart_uploads.list_uploaded_parts(storage, upload=upload)
    return [
        UppyPart(PartNumber=part.part_number, Size=part.size, ETag=part.etag)
        for part in uploaded.parts
    ]


async def complete(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    upload: Upload,
    parts: list[UppyPart],
) -> UppyCompleted:
    """``POST /s3/multipart/{uploadId}/complete``: join the parts and confirm the file."""
    confirmed = await multipart_uploads.complete_multipart_upload(
        session,
        storage,
        settings,
        upload=upload,
        parts=[CompletedPart(part_number=part.PartNumber, etag=part.ETag) for part in parts],
    )
    return UppyCompleted(location=confirmed.download_url, key=confirmed.file_key)


async def abort(session: AsyncSession, storage: Storage, *, upload: Upload) -> None:
    """``DELETE /s3/multipart/{uploadId}``."""
    await abort_upload(session, storage, upload=upload)
