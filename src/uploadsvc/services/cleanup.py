"""Cleanup of orphaned objects (SPEC §6), shared by the cron job and the CLI.

A run, under a lease so that only one runs at a time:

1. claims pending uploads whose URL expired more than the cutoff ago, with a
   conditional ``pending → expired`` UPDATE. A confirm changes the same row
   with ``pending → confirmed``; the database lets exactly one of them win, so
   a confirm after the claim answers 410 and a confirm that won keeps its
   object.
2. pages through the objects under the upload prefixes, looks the keys of
   one page up in one query, and deletes (``DeleteObjects``, up to 1000 keys)
   the objects of expired, rejected and deleted uploads, and objects with no
   upload at all that are older than the cutoff. Objects of confirmed and
   pending uploads are never touched, nor anything outside the upload
   prefixes (``events/`` belongs to imports).
3. aborts multipart uploads left incomplete for longer than the cutoff.

Every run leaves a ``cleanup_runs`` row and a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from uploadsvc.db import utcnow
from uploadsvc.models import CleanupRun, Lease, Upload, UploadStatus
from uploadsvc.profiles import UPLOAD_PREFIXES
from uploadsvc.storage import Storage
from uploadsvc.storage.base import DELETE_BATCH_SIZE, ListedObject

logger = logging.getLogger(__name__)

LEASE_NAME = "cleanup"
# Longer than any run should take; if the holder dies, the next run after this takes over.
LEASE_DURATION = dt.timedelta(hours=1)
# Uploads in these states can never become files again: their objects go at once.
# Just before the first upload prefix, and past the last one ("/" + 1 == "0").
_LISTING_START = min(UPLOAD_PREFIXES)[:-1] + "."
_LISTING_END = max(UPLOAD_PREFIXES)[:-1] + "0"
_FINISHED = frozenset(
    {UploadStatus.EXPIRED, UploadStatus.REJECTED, UploadStatus.DELETED, UploadStatus.ABORTED}
)


@dataclass
class CleanupReport:
    run_id: uuid.UUID
    dry_run: bool
    outcome: str = "done"  # done | skipped (another run holds the lease) | failed
    scanned: int = 0
    deleted: int = 0
    expired: int = 0
    aborted: int = 0
    freed_bytes: int = 0

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        return (
            f"cleanup {self.outcome}: scanned {self.scanned} objects, {verb} {self.deleted} "
            f"({self.freed_bytes} bytes), expired {self.expired} pending uploads, "
            f"aborted {self.aborted} multipart uploads"
        )


async def run_cleanup(
    session_factory: async_sessionmaker[AsyncSession],
    storage: Storage,
    *,
    older_than: dt.timedelta,
    dry_run: bool = False,
    now: dt.datetime | None = None,
) -> CleanupReport:
    """One cleanup run; ``now`` is injectable so tests can age objects."""
    started_at = utcnow()
    now = now or started_at
    cutoff = now - older_than
    report = CleanupReport(run_id=uuid.uuid4(), dry_run=dry_run)
    holder = report.run_id.hex
    if not await _take_lease(session_factory, holder, now):
        report.outcome = "skipped"
        await _record(session_factory, report, started_at, older_than)
        logger.info("cleanup skipped: another run holds the lease")
        return report
    try:
        report.expired = await _expire_pending(session_factory, cutoff, dry_run=dry_run)
        await _sweep(session_factory, storage, report, cutoff, dry_run=dry_run)
        report.aborted = await _abort_incomplete(storage, cutoff, dry_run=dry_run)
    except Exception as exc:
        report.outcome = "failed"
        await _record(session_factory, report, started_at, older_than, error=type(exc).__name__)
        raise
    finally:
        await _release_lease(session_factory, holder)
    await _record(session_factory, report, started_at, older_than)
    logger.info("%s", report.summary())
    return report


async def _take_lease(
    session_factory: async_sessionmaker[AsyncSession], holder: str, now: dt.datetime
) -> bool:
    async with session_factory() as session, session.begin():
        result = await session.execute(
            update(Lease)
            .where(Lease.name == LEASE_NAME, Lease.expires_at < utcnow())
            .values(holder=holder, expires_at=utcnow() + LEASE_DURATION)
            .execution_options(synchronize_session=False)
        )
    return bool(getattr(result, "rowcount", 0) == 1)


async def _release_lease(session_factory: async_sessionmaker[AsyncSession], holder: str) -> None:
    async with session_factory() as session, session.begin():
        await session.execute(
            update(Lease)
            .where(Lease.name == LEASE_NAME, Lease.holder == holder)
            .values(holder=None, expires_at=utcnow())
            .execution_options(synchronize_session=False)
        )


async def _expire_pending(
    session_factory: async_sessionmaker[AsyncSession], cutoff: dt.datetime, *, dry_run: bool
) -> int:
    """Claim pending uploads whose URL expired before ``cutoff``; their objects go in the sweep."""
    due = (Upload.status == UploadStatus.PENDING) & (Upload.url_expires_at < cutoff)
    async with session_factory() as session, session.begin():
        if dry_run:
            ids = (await session.scalars(select(Upload.id).where(due))).all()
            return len(ids)
        # The status test in the WHERE clause is the claim: a row that a
        # confirm has just changed no longer matches, and is left alone.
        claimed = await session.scalars(
            update(Upload)
            .where(due)
            .values(status=UploadStatus.EXPIRED)
            .returning(Upload.id)
            .execution_options(synchronize_session=False)
        )
        return len(claimed.all())


async def _sweep(
    session_factory: async_sessionmaker[AsyncSession],
    storage: Storage,
    report: CleanupReport,
    cutoff: dt.datetime,
    *,
    dry_run: bool,
) -> None:
    doomed: list[ListedObject] = []
    # One listing for all upload prefixes: it starts just before the first
    # (skipping events/, which sorts earlier) and stops after the last, so
    # a bucket of N upload objects costs ceil(N/1000) listing requests.
    async for page in _one_page_ahead(storage.list_pages(start_after=_LISTING_START)):
        ours = [listed for listed in page if listed.key.startswith(UPLOAD_PREFIXES)]
        report.scanned += len(ours)
        if ours:
            doomed.extend(await _orphans_in(session_factory, ours, cutoff, dry_run=dry_run))
        while len(doomed) >= DELETE_BATCH_SIZE:
            batch, doomed = doomed[:DELETE_BATCH_SIZE], doomed[DELETE_BATCH_SIZE:]
            await _delete(storage, report, batch, dry_run=dry_run)
        if page and page[-1].key >= _LISTING_END:
            break
    if doomed:
        await _delete(storage, report, doomed, dry_run=dry_run)


async def _one_page_ahead(
    pages: AsyncIterator[list[ListedObject]],
) -> AsyncIterator[list[ListedObject]]:
    """The pages, with the next one already being fetched while the caller works on this one.

    Listing and the row lookup then overlap, so a run takes about as long as
    the listing alone; memory holds two pages at most.
    """
    iterator = aiter(pages)
    upcoming: asyncio.Future[list[ListedObject] | None] = asyncio.ensure_future(
        anext(iterator, None)
    )
    try:
        while (page := await upcoming) is not None:
            upcoming = asyncio.ensure_future(anext(iterator, None))
            yield page
    finally:
        upcoming.cancel()
        with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
            await upcoming
        closer = getattr(iterator, "aclose", None)
        if closer is not None:
            await closer()


async def _orphans_in(
    session_factory: async_sessionmaker[AsyncSession],
    page: list[ListedObject],
    cutoff: dt.datetime,
    *,
    dry_run: bool,
) -> list[ListedObject]:
    """The objects of one listing page that may go, decided with one query."""
    async with session_factory() as session:
        rows = (
            await session.execute(
                select(Upload.file_key, Upload.status, Upload.url_expires_at).where(
                    Upload.file_key.in_([listed.key for listed in page])
                )
            )
        ).all()
    uploads = {key: (status, url_expires_at) for key, status, url_expires_at in rows}
    orphans = []
    for listed in page:
        upload = uploads.get(listed.key)
        if upload is None:
            # No upload ever pointed here: only the cutoff protects it.
            if listed.last_modified < cutoff:
                orphans.append(listed)
            continue
        status, url_expires_at = upload
        # A dry run did not claim expired pending uploads; count them as claimed.
        would_expire = dry_run and status is UploadStatus.PENDING and url_expires_at < cutoff
        if status in _FINISHED or would_expire:
            orphans.append(listed)
    return orphans


async def _delete(
    storage: Storage, report: CleanupReport, batch: list[ListedObject], *, dry_run: bool
) -> None:
    if not dry_run:
        await storage.delete_many([listed.key for listed in batch])
    report.deleted += len(batch)
    report.freed_bytes += sum(listed.size for listed in batch)


async def _abort_incomplete(storage: Storage, cutoff: dt.datetime, *, dry_run: bool) -> int:
    aborted = 0
    for upload in await storage.list_incomplete_uploads(""):
        if upload.key.startswith(UPLOAD_PREFIXES) and upload.initiated < cutoff:
            if not dry_run:
                await storage.abort_upload(upload)
            aborted += 1
    return aborted


async def _record(
    session_factory: async_sessionmaker[AsyncSession],
    report: CleanupReport,
    started_at: dt.datetime,
    older_than: dt.timedelta,
    *,
    error: str | None = None,
) -> None:
    counts = asdict(report)
    async with session_factory() as session, session.begin():
        session.add(
            CleanupRun(
                id=report.run_id,
                started_at=started_at,
                finished_at=utcnow(),
                dry_run=report.dry_run,
                outcome=report.outcome,
                cutoff_seconds=int(older_than.total_seconds()),
                scanned=counts["scanned"],
                deleted=counts["deleted"],
                expired=counts["expired"],
                aborted=counts["aborted"],
                freed_bytes=counts["freed_bytes"],
                error=error,
            )
        )
