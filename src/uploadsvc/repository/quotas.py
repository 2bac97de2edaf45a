"""A user's stored bytes, and the lock that makes checking them against a quota safe.

docs/api.md, "Quotas": a user's usage is the size of their confirmed files
plus the declared size of their pending uploads (the bytes they may still
PUT). Checking it and recording a new upload must be one decision per
owner, or two concurrent requests could each see room for the last bytes:
on PostgreSQL a transaction-scoped advisory lock on the owner serialises
them (the next statement, under READ COMMITTED, sees what the previous
holder committed); SQLite's write transactions (``BEGIN IMMEDIATE``, db.py)
are already one at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from uploadsvc.db import autocommit
from uploadsvc.models.uploads import Upload, UploadStatus


@dataclass(frozen=True, slots=True)
class StoredBytes:
    confirmed_bytes: int
    pending_bytes: int
    files: int

    @property
    def used_bytes(self) -> int:
        return self.confirmed_bytes + self.pending_bytes


# Built once, like the hot path's statements in repository/uploads.py.
_USAGE = select(
    func.coalesce(func.sum(Upload.size_bytes).filter(Upload.status == UploadStatus.CONFIRMED), 0),
    func.coalesce(func.sum(Upload.size_bytes).filter(Upload.status == UploadStatus.PENDING), 0),
    func.count().filter(Upload.status == UploadStatus.CONFIRMED),
).where(
    Upload.owner_id == bindparam("owner_id"),
    Upload.status.in_([UploadStatus.CONFIRMED, UploadStatus.PENDING]),
)
# hashtextextended: a 64-bit key from the owner id, so two owners share a
# lock only by a hash collision (which costs a wait, never a wrong answer).
_LOCK_OWNER = text("SELECT pg_advisory_xact_lock(hashtextextended(:owner_id, 0))")


async def _stored_bytes(connection: AsyncConnection | AsyncSession, owner_id: str) -> StoredBytes:
    row = (await connection.execute(_USAGE, {"owner_id": owner_id})).one()
    confirmed, pending, files = row
    return StoredBytes(
        confirmed_bytes=int(confirmed or 0), pending_bytes=int(pending or 0), files=files
    )


async def read_stored_bytes(engine: AsyncEngine, *, owner_id: str) -> StoredBytes:
    """The owner's usage now, in one autocommit round trip."""
    async with autocommit(engine) as connection:
        return await _stored_bytes(connection, owner_id)


async def lock_stored_bytes(session: AsyncSession, *, owner_id: str) -> StoredBytes:
    """The owner's usage, locked until ``session`` commits or rolls back.

    Rows staged in ``session`` and not flushed yet are not counted: the
    caller adds their bytes itself.
    """
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        await session.execute(_LOCK_OWNER, {"owner_id": owner_id})
    return await _stored_bytes(session, owner_id)


async def insert_pending_if(
    engine: AsyncEngine, upload: Upload, *, fits: Callable[[StoredBytes], bool]
) -> StoredBytes | None:
    """Record a pending upload if ``fits`` says its owner's usage has room for it.

    One short transaction (lock, count, insert, commit); ``None`` when the
    row was written, else the usage that left no room, with nothing written.
    """
    values: dict[str, Any] = {column.key: getattr(upload, column.key) for column in _TABLE.columns}
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(_LOCK_OWNER, {"owner_id": upload.owner_id})
        stored = await _stored_bytes(connection, upload.owner_id)
        if not fits(stored):
            return stored
        await connection.execute(insert(Upload).values(values))
    return None


_TABLE = Upload.__table__
