"""Confirmed files: read, list, download, delete."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import NotFound, StorageError
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.profiles import Purpose, content_disposition
from uploadsvc.repository import uploads as repository
from uploadsvc.schemas.files import ConfirmedFile, DownloadUrl, FileList, FileRead
from uploadsvc.security import Principal
from uploadsvc.services import images
from uploadsvc.storage import Storage

logger = logging.getLogger(__name__)


def file_read(upload: Upload) -> FileRead:
    assert upload.size_bytes is not None, "confirm records the size of every file"
    return FileRead(
        file_id=upload.id,
        file_key=upload.file_key,
        filename=upload.filename,
        content_type=upload.content_type,
        size_bytes=upload.size_bytes,
        sha256=upload.sha256,
        status=upload.status,
        purpose=Purpose(upload.purpose),
        created_at=upload.created_at,
        confirmed_at=upload.confirmed_at,
    )


async def download_url(storage: Storage, settings: Settings, upload: Upload) -> DownloadUrl:
    expires_in = settings.download_url_expires_seconds
    url = await storage.presign_get(
        upload.file_key,
        expires_in=expires_in,
        content_type=upload.content_type,
        content_disposition=content_disposition(upload.filename, content_type=upload.content_type),
    )
    return DownloadUrl(download_url=url, expires_in=expires_in)


async def confirmed_body(storage: Storage, settings: Settings, upload: Upload) -> ConfirmedFile:
    download = await download_url(storage, settings, upload)
    return ConfirmedFile(
        **file_read(upload).model_dump(),
        download_url=download.download_url,
        expires_in=download.expires_in,
    )


def require_confirmed(upload: Upload) -> Upload:
    """Files routes see confirmed uploads only; anything else is 'no such file'."""
    if upload.status is not UploadStatus.CONFIRMED:
        raise NotFound("No such file.", code="file_not_found")
    return upload


async def list_files(
    session: AsyncSession, *, principal: Principal, cursor: str | None, limit: int
) -> FileList:
    rows, next_cursor = await repository.list_confirmed(
        session, owner_id=principal.user_id, cursor=cursor, limit=limit
    )
    return FileList(items=[file_read(row) for row in rows], next_cursor=next_cursor)


async def delete_file(session: AsyncSession, storage: Storage, *, upload: Upload) -> None:
    won = await repository.transition(
        session,
        upload,
        from_status=UploadStatus.CONFIRMED,
        to_status=UploadStatus.DELETED,
        deleted_at=utcnow(),
    )
    if not won:
        raise NotFound("No such file.", code="file_not_found")
    # Commit before touching storage: if the delete below fails, the row
    # already says "deleted" and cleanup removes the object later, whereas
    # the other order could leave a confirmed file without its bytes.
    await session.commit()
    try:
        await storage.delete(upload.file_key)
        await images.remove_variants(session, storage, file_id=upload.id)
    except StorageError:
        logger.warning("object of deleted file %s left for cleanup", upload.id)
