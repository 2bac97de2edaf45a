"""Multipart uploads: large files go to storage in parts, straight from the client.

The flow (docs/api.md, "Multipart upload"): ``start_multipart_upload`` records a pending upload,
starts an S3 multipart upload and signs one PUT per part, each with the
part's exact Content-Length, so storage itself refuses a part of another
size. A client that crashed asks ``list_uploaded_parts`` what storage has
and ``sign_parts`` for fresh URLs of the rest. ``complete_multipart_upload``
joins the parts and then runs the same checks as every confirm (size, type,
checksum, magic bytes): a file made of parts is confirmed like any other.

An upload started without a size (Uppy's multipart create sends none) signs
no part's length, so its bounds are its own (docs/api.md, "Security
bounds"): no more parts than a file within the profile's maximum can have,
and an absolute lifetime that no request for URLs extends; cleanup expires
it then, whatever URLs were asked for.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import BadRequest, Conflict, Gone, NotFound
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.profiles import Purpose, profile_for
from uploadsvc.repository import uploads as repository
from uploadsvc.schemas.files import ConfirmedFile
from uploadsvc.schemas.multipart_uploads import (
    MAX_PARTS,
    CompletedPart,
    MultipartUploadRequest,
    MultipartUploadResponse,
    PartUrl,
    PartUrls,
    UploadedPartRead,
    UploadedParts,
)
from uploadsvc.security import Principal
from uploadsvc.services.uploads import confirm_upload, declare_upload, not_pending
from uploadsvc.storage import Storage
from uploadsvc.storage.base import MIN_PART_SIZE, PartGrant

MiB = 1024 * 1024
_PRESIGNS_BETWEEN_YIELDS = 16
# How long an upload without a declared size may go on, from its start.
UNDECLARED_LIFETIME = dt.timedelta(hours=24)


def choose_part_size(size: int) -> int:
    """Whole MiB, at least S3's 5 MiB minimum, and at most ``MAX_PARTS`` parts.

    Small parts suit flaky mobile links (a failed part costs little to send
    again); the cap keeps every part's URL in one response.
    """
    per_part = -(-size // MAX_PARTS)
    return max(MIN_PART_SIZE, -(-per_part // MiB) * MiB)


def part_count(size: int, part_size: int) -> int:
    return max(1, -(-size // part_size))


def part_length(upload: Upload, part_number: int) -> int | None:
    """The exact size of one part, when the upload's size was declared."""
    if upload.size_bytes is None or upload.part_size is None:
        return None
    count = part_count(upload.size_bytes, upload.part_size)
    if part_number < count:
        return upload.part_size
    return upload.size_bytes - upload.part_size * (count - 1)


def undeclared_part_limit(settings: Settings, upload: Upload) -> int:
    """The most parts an upload without a declared size may have.

    Every part but the last is at least ``MIN_PART_SIZE``, so more parts
    than this cannot make a file within the profile's maximum.
    """
    max_bytes = profile_for(settings, Purpose(upload.purpose)).max_bytes
    return max(1, -(-max_bytes // MIN_PART_SIZE))


def _url_lifetime(settings: Settings, upload: Upload, now: dt.datetime) -> int:
    """Seconds the next URLs of ``upload`` may live; Gone once its lifetime is over."""
    if upload.size_bytes is not None:
        return settings.upload_url_expires_seconds
    remaining = int((upload.created_at + UNDECLARED_LIFETIME - now).total_seconds())
    if remaining <= 0:
        raise Gone(
            "This upload is past its lifetime; start a new one.", code="upload_lifetime_over"
        )
    return min(settings.upload_url_expires_seconds, remaining)


async def start_multipart_upload(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    request: MultipartUploadRequest,
) -> MultipartUploadResponse:
    upload = declare_upload(settings, principal=principal, file=request)
    upload.part_size = choose_part_size(request.size)
    await start_in_storage(session, storage, upload)
    numbers = range(1, part_count(request.size, upload.part_size) + 1)
    parts = await _part_urls(storage, settings, upload, numbers)
    return MultipartUploadResponse(
        upload_id=upload.id,
        file_key=upload.file_key,
        part_size=upload.part_size,
        parts=parts,
        expires_in=settings.upload_url_expires_seconds,
        expires_at=upload.url_expires_at,
    )


async def start_in_storage(session: AsyncSession, storage: Storage, upload: Upload) -> None:
    """Start the storage side of a new multipart upload, then record its row."""
    upload.multipart_upload_id = await storage.start_multipart(
        upload.file_key, content_type=upload.content_type
    )
    try:
        await repository.add(session, upload)
    except BaseException:
        await storage.abort_multipart(
            upload.file_key, multipart_upload_id=upload.multipart_upload_id
        )
        raise


def require_open_multipart(upload: Upload) -> str:
    """Storage's multipart upload id of a pending multipart upload; 409/410/422 otherwise."""
    if upload.status is not UploadStatus.PENDING:
        raise not_pending(upload)
    if upload.multipart_upload_id is None:
        raise Conflict("This upload is a single PUT, not a multipart upload.", code="not_multipart")
    return upload.multipart_upload_id


async def list_uploaded_parts(storage: Storage, *, upload: Upload) -> UploadedParts:
    """What storage holds of a pending multipart upload, so a client can resume."""
    multipart_upload_id = require_open_multipart(upload)
    parts = await storage.list_parts(upload.file_key, multipart_upload_id=multipart_upload_id)
    return UploadedParts(
        upload_id=upload.id,
        file_key=upload.file_key,
        part_size=upload.part_size,
        parts=[
            UploadedPartRead(part_number=part.part_number, size=part.size, etag=part.etag)
            for part in parts
        ],
    )


async def sign_parts(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    upload: Upload,
    part_numbers: list[int],
) -> PartUrls:
    """Fresh URLs for some parts of a pending multipart upload (resume, expired URLs)."""
    require_open_multipart(upload)
    last = (
        part_count(upload.size_bytes, upload.part_size)
        if upload.size_bytes is not None and upload.part_size is not None
        else undeclared_part_limit(settings, upload)
    )
    wrong = sorted({number for number in part_numbers if not 1 <= number <= last})
    if wrong:
        raise BadRequest(
            f"This upload has parts 1 to {last}; there is no part {wrong[0]}.",
            code="invalid_part_number",
        )
    now = utcnow()
    expires_in = _url_lifetime(settings, upload, now)
    # Uploading is still going on: keep cleanup's hands off for another URL
    # lifetime (never past an undeclared upload's own lifetime).
    upload.url_expires_at = now + dt.timedelta(seconds=expires_in)
    await session.flush()
    return PartUrls(
        parts=await _part_urls(
            storage, settings, upload, sorted(set(part_numbers)), expires_in=expires_in
        ),
        expires_in=expires_in,
        expires_at=upload.url_expires_at,
    )


async def _part_urls(
    storage: Storage,
    settings: Settings,
    upload: Upload,
    numbers: Iterable[int],
    *,
    expires_in: int | None = None,
) -> list[PartUrl]:
    assert upload.multipart_upload_id is not None
    urls = []
    for index, number in enumerate(numbers):
        if index and index % _PRESIGNS_BETWEEN_YIELDS == 0:
            # Signing is CPU work (~0.3 ms a URL); a 1000-part upload must not
            # hold the event loop for the whole batch.
            await asyncio.sleep(0)
        size = part_length(upload, number)
        presigned = await storage.presign_part(
            PartGrant(
                key=upload.file_key,
                multipart_upload_id=upload.multipart_upload_id,
                part_number=number,
                content_length=size,
                expires_in=expires_in or settings.upload_url_expires_seconds,
            )
        )
        urls.append(
            PartUrl(part_number=number, url=presigned.url, size=size, headers=presigned.headers)
        )
    return urls


async def complete_multipart_upload(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    upload: Upload,
    parts: list[CompletedPart],
) -> ConfirmedFile:
    """Join the parts, then confirm the object like any other upload.

    Idempotent: completing again answers the confirm body again (or its 422),
    also when an earlier attempt joined the parts but failed before confirming.
    """
    if upload.status is UploadStatus.PENDING:
        multipart_upload_id = require_open_multipart(upload)
        # NotFound: joined by an earlier attempt (or aborted). The object
        # decides: confirm answers 409 object_missing when there is none.
        with contextlib.suppress(NotFound):
            await storage.complete_multipart(
                upload.file_key,
                multipart_upload_id=multipart_upload_id,
                parts=[(part.part_number, part.etag) for part in parts],
            )
    return await confirm_upload(session, storage, settings, upload=upload)
