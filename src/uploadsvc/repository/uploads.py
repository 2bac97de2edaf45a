"""Queries on uploads. Repositories flush; the request or job scope commits."""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, and_, bindparam, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

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


_COLUMN_KEYS = tuple(column.key for column in _TABLE.columns)


class _Statement:
    """A hot-path statement, sent by asyncpg itself on PostgreSQL.

    SQLAlchemy still compiles it (once per dialect), lends the pooled
    connection and converts the values with the columns' own types, so the
    rows are the ones ``connection.execute`` returns; what it no longer does
    per call is build an execution context, a cursor and a result (half of
    the CPU of a read, BENCHMARKS.md "The request path"). SQLite runs it
    through SQLAlchemy as before.
    """

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        self._compiled: dict[str, tuple[Any, str, tuple[Any, ...], tuple[Any, ...]]] = {}

    def _for(self, dialect: Any) -> tuple[Any, str, tuple[Any, ...], tuple[Any, ...]]:
        prepared = self._compiled.get(dialect.name)
        if prepared is None:
            compiled = self.statement.compile(dialect=dialect)
            binds = tuple(
                (name, compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect))
                for name in compiled.positiontup or ()
            )
            columns = getattr(self.statement, "selected_columns", ())
            results = tuple(
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in columns
            )
            prepared = self._compiled[dialect.name] = (compiled, str(compiled), binds, results)
        return prepared

    async def run(self, connection: AsyncConnection, values: dict[str, Any]) -> list[Any]:
        """The rows (tuples of the columns' values), on an autocommit connection."""
        if connection.dialect.driver != "asyncpg":
            result = await connection.execute(self.statement, values)
            return list(result) if result.returns_rows else []
        compiled, sql, binds, results = self._for(connection.dialect)
        params = compiled.construct_params(values)
        arguments = [
            params[name] if process is None else process(params[name]) for name, process in binds
        ]
        raw = await connection.get_raw_connection()
        driver: Any = raw.driver_connection
        records = await driver.fetch(sql, *arguments)
        return [
            tuple(
                value if process is None else process(value)
                for process, value in zip(results, record, strict=True)
            )
            for record in records
        ]


# Every column bound by name: one statement compiled once, whatever the values.
_INSERT = _Statement(insert(Upload))


def _detached(row: Any) -> Upload:
    return Upload(**dict(zip(_COLUMN_KEYS, row, strict=True)))


async def insert_pending(engine: AsyncEngine, upload: Upload) -> Upload:
    """Record a new upload with one INSERT, committed at once; ``upload`` stays detached.

    For routes whose only write is this row (request-url): nothing else in
    the request could roll it back, so it needs no session around it.
    """
    values = {key: getattr(upload, key) for key in _COLUMN_KEYS}
    async with autocommit(engine) as connection:
        await _INSERT.run(connection, values)
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
    "by_id": (_Statement(_BY_ID), _Statement(_BY_ID.where(_OWNED_BY))),
    "by_key": (_Statement(_BY_KEY), _Statement(_BY_KEY.where(_OWNED_BY))),
}
_PAGES = (_Statement(_FIRST_PAGE), _Statement(_NEXT_PAGE))


async def _read_one(
    engine: AsyncEngine, lookup: str, principal: Principal, **values: Any
) -> Upload | None:
    query, owned_query = _VISIBLE[lookup]
    if not principal.is_admin:
        query, values["owner_id"] = owned_query, principal.user_id
    async with autocommit(engine) as connection:
        rows = await query.run(connection, values)
    return _detached(rows[0]) if rows else None


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


class UploadRow(NamedTuple):
    """A row of ``uploads`` as a page of a list returns it, for answers only.

    Its columns are attributes, as on an Upload, without an ORM object per
    row (which cost more than reading and serialising it).
    """

    id: uuid.UUID
    owner_id: str
    purpose: str
    file_key: str
    filename: str
    content_type: str
    size_bytes: int | None
    sha256: str | None
    status: UploadStatus
    rejection_code: str | None
    created_at: dt.datetime
    url_expires_at: dt.datetime
    confirmed_at: dt.datetime | None
    deleted_at: dt.datetime | None
    multipart_upload_id: str | None
    part_size: int | None
    scan_state: ScanState | None
    scan_signature: str | None
    scanned_at: dt.datetime | None


assert UploadRow._fields == _COLUMN_KEYS, "UploadRow must list the columns of uploads"


async def list_confirmed(
    engine: AsyncEngine, *, owner_id: str, cursor: str | None, limit: int
) -> tuple[list[UploadRow], str | None]:
    """One page of a user's confirmed files, newest first (keyset pagination)."""
    values: dict[str, Any] = {"owner_id": owner_id, "limit": limit + 1}
    query = _PAGES[0]
    if cursor is not None:
        values["created_at"], values["last_id"] = _decode_cursor(cursor)
        query = _PAGES[1]
    async with autocommit(engine) as connection:
        rows = [UploadRow._make(row) for row in await query.run(connection, values)]
    next_cursor = _encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def _encode_cursor(upload: Upload | UploadRow) -> str:
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
