"""Confirmed files: read, list, download, delete."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import NotFound, StorageError
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.profiles import Purpose, content_disposition
from uploadsvc.repository import uploads as repository
from uploadsvc.repository.uploads import UploadRow
from uploadsvc.schemas.files import (
    ConfirmedFile,
    DownloadUrl,
    FileList,
    FileListItem,
    FileRead,
    InfectedFile,
    InfectedFileList,
)
from uploadsvc.security import Principal
from uploadsvc.services import images, scanning, webhooks
from uploadsvc.storage import Storage
from uploadsvc.storage.base import GetGrant

logger = logging.getLogger(__name__)


def file_read(upload: Upload) -> FileRead:
    return FileRead(**_file_fields(upload))


def _file_fields(upload: Upload | UploadRow) -> dict[str, Any]:
    assert upload.size_bytes is not None, "confirm records the size of every file"
    return {
        "file_id": upload.id,
        "file_key": upload.file_key,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size_bytes": upload.size_bytes,
        "sha256": upload.sha256,
        "status": upload.status,
        "purpose": Purpose(upload.purpose),
        "created_at": upload.created_at,
        "confirmed_at": upload.confirmed_at,
        "scan": upload.scan_state,
    }


async def file_with_variants(
    engine: AsyncEngine, storage: Storage, settings: Settings, upload: Upload
) -> FileRead:
    """``GET /v1/files/{id}``: the file; an image with its variants (one more
    statement, for images only)."""
    read = file_read(upload)
    if upload.content_type in images.IMAGE_TYPES:
        read.variants = await images.variants_of_read_file(engine, storage, settings, upload=upload)
    return read


def download_grant(
    key: str, *, filename: str, content_type: str, expires_in: int, disposition: str = "attachment"
) -> GetGrant:
    """A GET of a stored file, served with its checked type under its owner's file name."""
    return GetGrant(
        key,
        expires_in=expires_in,
        content_type=content_type,
        content_disposition=content_disposition(
            filename, content_type=content_type, disposition=disposition
        ),
    )


async def download_url(storage: Storage, settings: Settings, upload: Upload) -> DownloadUrl:
    """A download URL, once the malware scanner (when on) has found the file clean."""
    scanning.require_servable(settings, upload)
    expires_in = settings.download_url_expires_seconds
    url = await storage.presign_get(
        download_grant(
            upload.file_key,
            filename=upload.filename,
            content_type=upload.content_type,
            expires_in=expires_in,
        )
    )
    return DownloadUrl(download_url=url, expires_in=expires_in)


async def confirmed_body(storage: Storage, settings: Settings, upload: Upload) -> ConfirmedFile:
    if not scanning.is_servable(settings, upload):
        # Not scanned (yet): no URL; GET /v1/files/{id}/download says when there is one.
        return ConfirmedFile(**file_read(upload).model_dump(), download_url=None, expires_in=None)
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


async def read_file(engine: AsyncEngine, *, principal: Principal, file_id: uuid.UUID) -> Upload:
    """The caller's confirmed file, read in one round trip (detached: for answers only)."""
    upload = await repository.read_visible(engine, principal=principal, upload_id=file_id)
    if upload is None:
        raise NotFound("No such file.", code="file_not_found")
    return require_confirmed(upload)


async def list_files(
    engine: AsyncEngine,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    cursor: str | None,
    limit: int,
    urls: bool = False,
) -> FileList:
    """One page of the caller's files, read in one round trip; ``urls``: with download URLs."""
    rows, next_cursor = await repository.list_confirmed(
        engine, owner_id=principal.user_id, cursor=cursor, limit=limit
    )
    # The rows' values have the fields' types already (the columns' own):
    # no validation per item, which for a page of 200 was most of its cost.
    items = [FileListItem.model_construct(**_file_fields(row)) for row in rows]
    page = FileList(items=items, next_cursor=next_cursor)
    return await add_download_urls(storage, settings, page) if urls else page


async def add_download_urls(storage: Storage, settings: Settings, page: FileList) -> FileList:
    """Give every item of ``page`` a download URL (``GET /v1/files?urls=true``).

    Signing is local work (a few HMACs per URL, no request to storage), so a
    page of 200 holds the event loop for a few milliseconds at most; the
    request-path benchmark (bench/request_path_bench.py) measures it.
    """
    expires_in = settings.download_url_expires_seconds
    for item in page.items:
        if not scanning.is_servable_state(settings, item.scan):
            continue  # not known to be clean: no URL, as the download route says
        item.download_url = await storage.presign_get(
            download_grant(
                item.file_key,
                filename=item.filename,
                content_type=item.content_type,
                expires_in=expires_in,
            )
        )
        item.expires_in = expires_in
    return page


async def delete_file(
    session: AsyncSession, storage: Storage, settings: Settings, *, upload: Upload
) -> None:
    won = await repository.transition(
        session,
        upload,
        from_status=UploadStatus.CONFIRMED,
        to_status=UploadStatus.DELETED,
        deleted_at=utcnow(),
    )
    if not won:
        raise NotFound("No such file.", code="file_not_found")
    webhooks.emit(session, settings, "file.deleted", webhooks.file_data(upload))
    # Commit before touching storage: if the delete below fails, the row
    # already says "deleted" and cleanup removes the object later, whereas
    # the other order could leave a confirmed file without its bytes.
    await session.commit()
    try:
        await storage.delete(upload.file_key)
        await images.remove_variants(session, storage, file_id=upload.id)
    except StorageError:
        logger.warning("object of deleted file %s left for cleanup", upload.id)


async def list_infected_files(
    session: AsyncSession, *, principal: Principal, limit: int
) -> InfectedFileList:
    """Admins: every user's infected files, with the signature found."""
    rows = await scanning.list_infected(session, principal=principal, limit=limit)
    return InfectedFileList(
        items=[
            InfectedFile(
                **file_read(row).model_dump(),
                owner_id=row.owner_id,
                signature=row.scan_signature,
                scanned_at=row.scanned_at,
            )
            for row in rows
        ]
    )
