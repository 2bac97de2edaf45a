"""Queries of cleanup: its lease, the expiry claim, the page lookups, its run rows.

The rules (which rows protect an object, which uploads are due) are the
service's (``services/cleanup.py``); these functions only ask the database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Collection

from sqlalchemy import ARRAY, ColumnElement, String, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from uploadsvc.db import utcnow
from uploadsvc.models.cleanup import CleanupRun, Lease
from uploadsvc.models.images import ImageVariant
from uploadsvc.models.uploads import Upload, UploadStatus

# What a lookup returns for one page: the positions (in the page) of the keys
# that no row protects, each with whether an upload row points there.
Unprotected = list[tuple[int, bool]]
PageLookup = Callable[[list[str]], Awaitable[Unprotected]]


async def take_lease(
    session: AsyncSession, *, name: str, holder: str, duration: dt.timedelta
) -> bool:
    """Take the lease if nobody holds it, or its holder's time ran out; True if taken."""
    result = await session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.expires_at < utcnow())
        .values(holder=holder, expires_at=utcnow() + duration)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


async def release_lease(session: AsyncSession, *, name: str, holder: str) -> None:
    await session.execute(
        update(Lease)
        .where(Lease.name == name, Lease.holder == holder)
        .values(holder=None, expires_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def _url_expired_before(cutoff: dt.datetime) -> ColumnElement[bool]:
    return (Upload.status == UploadStatus.PENDING) & (Upload.url_expires_at < cutoff)


async def pending_expired_before(session: AsyncSession, *, cutoff: dt.datetime) -> list[uuid.UUID]:
    """The ids of the pending uploads ``expire_pending_before`` would claim."""
    return list(await session.scalars(select(Upload.id).where(_url_expired_before(cutoff))))


async def pending_upload(session: AsyncSession, *, upload_id: uuid.UUID) -> Upload | None:
    """The upload, if it is still pending, loaded in ``session`` (to be confirmed)."""
    return await session.scalar(
        select(Upload).where(Upload.id == upload_id, Upload.status == UploadStatus.PENDING)
    )


async def count_pending_expired_before(session: AsyncSession, *, cutoff: dt.datetime) -> int:
    """How many pending uploads ``expire_pending_before`` would claim."""
    return len(await pending_expired_before(session, cutoff=cutoff))


async def expire_pending_before(session: AsyncSession, *, cutoff: dt.datetime) -> int:
    """Claim (``pending → expired``) the uploads whose URL expired before ``cutoff``.

    The status test in the WHERE clause is the claim: a row that a confirm
    has just changed no longer matches, and is left alone.
    """
    claimed = await session.scalars(
        update(Upload)
        .where(_url_expired_before(cutoff))
        .values(status=UploadStatus.EXPIRED)
        .returning(Upload.id)
        .execution_options(synchronize_session=False)
    )
    return len(claimed.all())


@contextlib.asynccontextmanager
async def open_page_lookup(
    session_factory: async_sessionmaker[AsyncSession],
    *,
    removable: Collection[UploadStatus],
    url_expired_before: dt.datetime | None = None,
) -> AsyncIterator[PageLookup]:
    """A function that looks up the keys of one listing page with one query.

    It answers which keys no row protects: those with no upload row, and
    those whose upload is in one of the ``removable`` states (or, with
    ``url_expired_before``, pending with its URL expired before then).
    """
    goes: ColumnElement[bool] = Upload.status.in_(sorted(removable))
    if url_expired_before is not None:
        goes |= _url_expired_before(url_expired_before)
    async with session_factory() as session:
        if session.get_bind().dialect.name == "postgresql":
            yield await _postgres_lookup(session, goes)
        else:
            yield _sqlite_lookup(session_factory, goes)


async def _postgres_lookup(session: AsyncSession, goes: ColumnElement[bool]) -> PageLookup:
    # One connection for the whole sweep, in autocommit: a lookup is one round
    # trip (no pool checkout, ping, BEGIN or ROLLBACK around it), and no
    # transaction stays open while objects are deleted.
    connection = await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
    # The page's keys travel as one array parameter, so the statement (and its
    # prepared plan) is the same for every page, and PostgreSQL probes the
    # unique index on file_key for each. Only the keys that may go come back
    # (a fifth of them in the benchmark), as positions in the page: decoding
    # rows is most of what a lookup costs this process.
    listed = (
        func.unnest(bindparam("keys", type_=ARRAY(String)))
        .table_valued("key", with_ordinality="position")
        .render_derived(name="listed")
    )
    statement = (
        select(listed.c.position - 1, Upload.id.is_not(None))
        .select_from(listed.outerjoin(Upload, Upload.file_key == listed.c.key))
        .where(Upload.id.is_(None) | goes)
    )

    async def unprotected(keys: list[str]) -> Unprotected:
        rows = await connection.execute(statement, {"keys": keys})
        return [(position, has_row) for position, has_row in rows]

    return unprotected


def _sqlite_lookup(
    session_factory: async_sessionmaker[AsyncSession], goes: ColumnElement[bool]
) -> PageLookup:
    # SQLite (make dev): a short transaction per page, since a transaction
    # there holds the database's write lock (BEGIN IMMEDIATE, see db.py).
    statement = select(Upload.file_key, goes).where(
        Upload.file_key.in_(bindparam("keys", expanding=True))
    )

    async def unprotected(keys: list[str]) -> Unprotected:
        async with session_factory() as session:
            found = dict((await session.execute(statement, {"keys": keys})).all())
        return [
            (position, key in found) for position, key in enumerate(keys) if found.get(key, True)
        ]

    return unprotected


async def recorded_variant_keys(session: AsyncSession, *, keys: Collection[str]) -> set[str]:
    """Those of ``keys`` that a variant row records (its unique index on object_key)."""
    rows = await session.scalars(
        select(ImageVariant.object_key).where(ImageVariant.object_key.in_(list(keys)))
    )
    return {key for key in rows if key is not None}


async def pending_multipart_upload_ids(
    session: AsyncSession, *, multipart_upload_ids: Collection[str]
) -> set[str]:
    """Which of these multipart upload ids belong to uploads that are still pending."""
    if not multipart_upload_ids:
        return set()
    found = await session.scalars(
        select(Upload.multipart_upload_id).where(
            Upload.multipart_upload_id.in_(multipart_upload_ids),
            Upload.status == UploadStatus.PENDING,
        )
    )
    return {found_id for found_id in found if found_id is not None}


async def add_run(session: AsyncSession, run: CleanupRun) -> CleanupRun:
    session.add(run)
    await session.flush()
    return run
