"""Queries on uploads. Repositories flush; the request or job scope commits."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from sqlalchemy import and_, or_, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.errors import BadRequest
from uploadsvc.models.uploads import ScanState, Upload, UploadStatus
from uploadsvc.security import Principal


def _visible_to(principal: Principal) -> Any:
    # Admins act on anyone's uploads; everyone else sees only their own.
    return true() if principal.is_admin else Upload.owner_id == principal.user_id


async def add(session: AsyncSession, upload: Upload) -> Upload:
    session.add(upload)
    await session.flush()
    return upload


async def get_visible(
    session: AsyncSession, *, principal: Principal, upload_id: uuid.UUID
) -> Upload | None:
    return await session.scalar(
        select(Upload).where(Upload.id == upload_id, _visible_to(principal))
    )


async def get_visible_by_key(
    session: AsyncSession, *, principal: Principal, file_key: str
) -> Upload | None:
    return await session.scalar(
        select(Upload).where(Upload.file_key == file_key, _visible_to(principal))
    )


async def set_url_expiry(
    session: AsyncSession, upload: Upload, *, expires_at: dt.datetime
) -> Upload:
    """Record when the upload's URLs expire; until then cleanup leaves it pending."""
    upload.url_expires_at = expires_at
    await session.flush()
    return upload


async def reload(session: AsyncSession, upload: Upload) -> Upload:
    """The row as it is now in the database (after a lost race)."""
    await session.refresh(upload)
    return upload


async def transition(
    session: AsyncSession,
    upload: Upload,
    *,
    from_status: UploadStatus,
    to_status: UploadStatus,
    **values: Any,
) -> bool:
    """Move an upload from one status to another, only if it is still in the first.

    This conditional UPDATE is what makes concurrent confirms (and a confirm
    racing cleanup) safe: the database lets exactly one of them win.
    """
    result = await session.execute(
        update(Upload)
        .where(Upload.id == upload.id, Upload.status == from_status)
        .values(status=to_status, **values)
        .execution_options(synchronize_session=False)
    )
    won = bool(getattr(result, "rowcount", 0) == 1)
    if won:
        await session.refresh(upload)
    return won


async def list_confirmed(
    session: AsyncSession, *, owner_id: str, cursor: str | None, limit: int
) -> tuple[list[Upload], str | None]:
    """One page of a user's confirmed files, newest first (keyset pagination)."""
    query = select(Upload).where(
        Upload.owner_id == owner_id, Upload.status == UploadStatus.CONFIRMED
    )
    if cursor is not None:
        created_at, last_id = _decode_cursor(cursor)
        query = query.where(
            or_(
                Upload.created_at < created_at,
                and_(Upload.created_at == created_at, Upload.id < last_id),
            )
        )
    query = query.order_by(Upload.created_at.desc(), Upload.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(query)).all())
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _encode_cursor(upload: Upload) -> str:
    raw = f"{upload.created_at.isoformat()}|{upload.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, _, last_id = raw.partition("|")
        parsed = dt.datetime.fromisoformat(created_at)
        if parsed.tzinfo is None:
            raise ValueError("naive cursor time")
        return parsed, uuid.UUID(last_id)
    except ValueError:
        raise BadRequest("The cursor is not valid.", code="invalid_cursor") from None


async def get_visible_multipart(
    session: AsyncSession, *, principal: Principal, file_key: str, multipart_upload_id: str
) -> Upload | None:
    """The caller's upload with this key and storage upload id (Uppy names both)."""
    return await session.scalar(
        select(Upload).where(
            Upload.file_key == file_key,
            Upload.multipart_upload_id == multipart_upload_id,
            _visible_to(principal),
        )
    )


async def get_confirmed(session: AsyncSession, *, upload_id: uuid.UUID) -> Upload | None:
    """A confirmed file by id, whoever owns it (jobs act for the service, not a user)."""
    return await session.scalar(
        select(Upload).where(Upload.id == upload_id, Upload.status == UploadStatus.CONFIRMED)
    )


async def set_scan_result(
    session: AsyncSession, *, upload_id: uuid.UUID, scan_state: ScanState, **values: Any
) -> bool:
    """Record a scan's outcome, only if the file is still waiting for one.

    Conditional like ``transition``: two scans of one file (a retried job
    racing the reconciler's) record one outcome.
    """
    result = await session.execute(
        update(Upload)
        .where(
            Upload.id == upload_id,
            Upload.status == UploadStatus.CONFIRMED,
            Upload.scan_state == ScanState.PENDING,
        )
        .values(scan_state=scan_state, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def pending_scans(
    session: AsyncSession, *, confirmed_before: dt.datetime, limit: int
) -> list[uuid.UUID]:
    """Confirmed files still waiting for a scan since before ``confirmed_before``, oldest first."""
    rows = await session.scalars(
        select(Upload.id)
        .where(
            Upload.scan_state == ScanState.PENDING,
            Upload.status == UploadStatus.CONFIRMED,
            Upload.confirmed_at < confirmed_before,
        )
        .order_by(Upload.confirmed_at)
        .limit(limit)
    )
    return list(rows.all())


async def list_infected(session: AsyncSession, *, limit: int) -> list[Upload]:
    """Every user's infected files (for admins), newest first."""
    rows = await session.scalars(
        select(Upload)
        .where(Upload.scan_state == ScanState.INFECTED, Upload.status == UploadStatus.CONFIRMED)
        .order_by(Upload.scanned_at.desc(), Upload.id.desc())
        .limit(limit)
    )
    return list(rows.all())


async def scan_of_key(session: AsyncSession, *, file_keys: list[str]) -> Upload | None:
    """The confirmed file stored at one of these keys (its key, or its quarantine key)."""
    return await session.scalar(
        select(Upload).where(
            Upload.file_key.in_(file_keys), Upload.status == UploadStatus.CONFIRMED
        )
    )
