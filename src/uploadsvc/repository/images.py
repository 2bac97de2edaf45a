"""Queries on image variants. Repositories flush; the request or job scope commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import ColumnElement, bindparam, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from uploadsvc.db import autocommit, utcnow
from uploadsvc.models.images import ImageVariant, VariantStatus
from uploadsvc.models.uploads import ScanState, Upload, UploadStatus


async def add_pending(session: AsyncSession, *, file_id: uuid.UUID, names: Sequence[str]) -> None:
    """A pending row per variant name, unless the file already has its rows."""
    existing = set(
        await session.scalars(select(ImageVariant.name).where(ImageVariant.file_id == file_id))
    )
    session.add_all(
        ImageVariant(file_id=file_id, name=name, status=VariantStatus.PENDING)
        for name in names
        if name not in existing
    )
    await session.flush()


def stage_pending(session: AsyncSession, *, file_id: uuid.UUID, names: Sequence[str]) -> None:
    """A pending row per variant name of a file whose row is only staged too:
    no I/O, the session's commit writes them (the file has no rows yet)."""
    session.add_all(
        ImageVariant(file_id=file_id, name=name, status=VariantStatus.PENDING) for name in names
    )


def add_pending_media(
    session: AsyncSession,
    *,
    event_id: uuid.UUID,
    media: Sequence[tuple[uuid.UUID, str]],
    names: Sequence[str],
) -> None:
    """A pending row per variant name of each imported medium (its row's id and
    object key); the import's commit writes them with its rows."""
    session.add_all(
        ImageVariant(
            event_id=event_id,
            medium_id=medium_id,
            source_key=key,
            name=name,
            status=VariantStatus.PENDING,
        )
        for medium_id, key in media
        for name in names
    )


async def list_for_medium(session: AsyncSession, *, medium_id: uuid.UUID) -> list[ImageVariant]:
    rows = await session.scalars(
        select(ImageVariant).where(ImageVariant.medium_id == medium_id).order_by(ImageVariant.name)
    )
    return list(rows)


async def list_for_event(session: AsyncSession, *, event_id: uuid.UUID) -> list[ImageVariant]:
    """The variants of an event's media, by medium and name."""
    rows = await session.scalars(
        select(ImageVariant)
        .where(ImageVariant.event_id == event_id)
        .order_by(ImageVariant.source_key, ImageVariant.name)
    )
    return list(rows)


def _of(owner_id: uuid.UUID) -> ColumnElement[bool]:
    """The variants of one file, or of one imported medium (the id of its row):
    both are random UUIDs, so one id names one of them."""
    return or_(ImageVariant.file_id == owner_id, ImageVariant.medium_id == owner_id)


async def list_for_file(session: AsyncSession, *, file_id: uuid.UUID) -> list[ImageVariant]:
    rows = await session.scalars(
        select(ImageVariant).where(ImageVariant.file_id == file_id).order_by(ImageVariant.name)
    )
    return list(rows)


_VARIANTS_OF_FILE = (
    select(ImageVariant.__table__)
    .where(ImageVariant.file_id == bindparam("file_id"))
    .order_by(ImageVariant.name)
)


async def list_for_file_autocommit(
    engine: AsyncEngine, *, file_id: uuid.UUID
) -> list[ImageVariant]:
    """``list_for_file`` as one autocommit statement, for a read on the hot path;
    detached rows (docs/architecture.md, "Reads and single writes")."""
    async with autocommit(engine) as connection:
        rows = await connection.execute(_VARIANTS_OF_FILE, {"file_id": file_id})
        return [ImageVariant(**row._mapping) for row in rows]


async def get_file(session: AsyncSession, *, file_id: uuid.UUID) -> Upload | None:
    return await session.get(Upload, file_id, populate_existing=True)


async def record_stripped(
    session: AsyncSession, *, file_id: uuid.UUID, size_bytes: int, sha256: str
) -> bool:
    """The original's new size and SHA-256, only while it is a confirmed file that
    no scan found infected (conditional, like the upload transitions)."""
    result = await session.execute(
        update(Upload)
        .where(
            Upload.id == file_id,
            Upload.status == UploadStatus.CONFIRMED,
            or_(Upload.scan_state.is_(None), Upload.scan_state != ScanState.INFECTED),
        )
        .values(size_bytes=size_bytes, sha256=sha256)
    )
    return bool(getattr(result, "rowcount", 0))


async def mark_failed(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    reason: str,
) -> None:
    for row in await session.scalars(select(ImageVariant).where(_of(owner_id))):
        if row.status is VariantStatus.PENDING:
            row.status = VariantStatus.FAILED
            row.failure_reason = reason[:255]
            row.updated_at = utcnow()
    await session.flush()


async def mark_ready(
    session: AsyncSession,
    *,
    owner_id: uuid.UUID,
    name: str,
    object_key: str,
    content_type: str,
    width: int,
    height: int,
    size_bytes: int,
) -> None:
    row = await session.scalar(select(ImageVariant).where(_of(owner_id), ImageVariant.name == name))
    if row is None:
        return
    row.status = VariantStatus.READY
    row.object_key = object_key
    row.content_type = content_type
    row.width = width
    row.height = height
    row.size_bytes = size_bytes
    row.failure_reason = None
    row.updated_at = utcnow()
    await session.flush()


async def delete_for_file(session: AsyncSession, *, file_id: uuid.UUID) -> None:
    await session.execute(delete(ImageVariant).where(ImageVariant.file_id == file_id))
    await session.flush()
