"""Queries on uploads. Repositories flush; the request or job scope commits."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ColumnElement, Row, Select, and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from uploadsvc.db import autocommit
from uploadsvc.errors import BadRequest
from uploadsvc.models.uploads import ScanState, Upload, UploadStatus
from uploadsvc.repository import owned
from uploadsvc.repository.owned import visible_to
from uploadsvc.security import Principal


def _visible_to(principal: Principal) -> ColumnElement[bool]:
    return visible_to(Upload, principal)


async def add(session: AsyncSession, upload: Upload) -> Upload:
    session.add(upload)
    await session.flush()
    return upload


async def get_visible(
    session: AsyncSession, *, principal: Principal, upload_id: uuid.UUID
) -> Upload | None:
    return await owned.get_visible(session, Upload, upload_id, principal=principal)


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


async def settle_pending(
    session: AsyncSession, upload: Upload, to_status: UploadStatus, **values: Any
) -> bool:
    """``transition`` out of PENDING (confirmed, rejected, aborted): one request decides."""
    return await transition(
        session, upload, from_status=UploadStatus.PENDING, to_status=to_status, **values
    )


# Reads and single writes on the hot path (docs/architecture.md, "Reads and
# single writes"): Core statements on the table, one autocommit round trip,
# rows made into detached ``Upload`` objects. They skip the ORM's identity
# map, unit of work and the session's BEGIN/COMMIT, which cost more than the
# query itself; what they return must not be handed to a session
# (``transition`` and ``reload`` need one it loaded).
_TABLE = Upload.__table__


def _detached(row: Row[Any]) -> Upload:
    return Upload(**row._mapping)


async def insert_pending(engine: AsyncEngine, upload: Upload) -> Upload:
    """Record a new upload with one INSERT, committed at once; ``upload`` stays detached.

    For routes whose only write is this row (request-url): nothing else in
    the request could roll it back, so it needs no session around it.
    """
    values = {column.key: getattr(upload, column.key) for column in _TABLE.columns}
    async with autocommit(engine) as connection:
        await connection.execute(insert(Upload).values(values))
    return upload


# Built once: a statement made per request costs more to construct and to
# derive its cache key from than to execute; these are compiled once per
# dialect (SQLAlchemy's compiled cache) and prepared once per connection
# (asyncpg's statement cache).
_BY_ID = select(_TABLE).where(Upload.id == bindparam("upload_id"))
_BY_KEY = select(_TABLE).where(Upload.file_key == bindparam("file_key"))
_OWNED_BY = Upload.owner_id == bindparam("owner_id")
_PAGE_ORDER = (Upload.created_at.desc(), Upload.id.desc())
_FIRST_PAGE = (
    select(_TABLE)
    .where(_OWNED_BY, Upload.status == UploadStatus.CONFIRMED)
    .order_by(*_PAGE_ORDER)
    .limit(bindparam("limit"))
)
_NEXT_PAGE = (
    select(_TABLE)
    .where(
        _OWNED_BY,
        Upload.status == UploadStatus.CONFIRMED,
        or_(
            Upload.created_at < bindparam("created_at"),
            and_(Upload.created_at == bindparam("created_at"), Upload.id < bindparam("last_id")),
        ),
    )
    .order_by(*_PAGE_ORDER)
    .limit(bindparam("limit"))
)


# Admins act on anyone's uploads; everyone else sees only their own.
_VISIBLE = {
    "by_id": (_BY_ID, _BY_ID.where(_OWNED_BY)),
    "by_key": (_BY_KEY, _BY_KEY.where(_OWNED_BY)),
}


async def _read_one(
    engine: AsyncEngine, lookup: str, principal: Principal, **values: Any
) -> Upload | None:
    anyones, owned = _VISIBLE[lookup]
    query: Select[Any] = anyones
    if not principal.is_admin:
        query, values["owner_id"] = owned, principal.user_id
    async with autocommit(engine) as connection:
        row = (await connection.execute(query, values)).first()
    return None if row is None else _detached(row)


async def read_visible(
    engine: AsyncEngine, *, principal: Principal, upload_id: uuid.UUID
) -> Upload | None:
    """``get_visible`` in one round trip, detached (for answers, not for changes)."""
    return await _read_one(engine, "by_id", principal, upload_id=upload_id)


async def read_visible_by_key(
    engine: AsyncEngine, *, principal: Principal, file_key: str
) -> Upload | None:
    """``get_visible_by_key`` in one round trip, detached (for answers, not for changes)."""
    return await _read_one(engine, "by_key", principal, file_key=file_key)


async def list_confirmed(
    engine: AsyncEngine, *, owner_id: str, cursor: str | None, limit: int
) -> tuple[list[Upload], str | None]:
    """One page of a user's confirmed files, newest first (keyset pagination), detached."""
    values: dict[str, Any] = {"owner_id": owner_id, "limit": limit + 1}
    query = _FIRST_PAGE
    if cursor is not None:
        values["created_at"], values["last_id"] = _decode_cursor(cursor)
        query = _NEXT_PAGE
    async with autocommit(engine) as connection:
        rows = [_detached(row) for row in await connection.execute(query, values)]
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
