"""Cleanup of orphaned objects, shared by the cron job and the CLI (docs/api.md, "Cleanup").

A run, under a lease so that only one runs at a time:

1. confirms the pending uploads whose URL expired more than the cutoff ago
   and whose object is in storage (a client that PUT its bytes and died
   before confirming): the confirm checks run as if the client had asked,
   so the upload becomes a file, or is rejected and its object deleted.
   Then it claims the rest with a conditional ``pending → expired`` UPDATE.
   A confirm changes the same row with ``pending → confirmed``; the database
   lets exactly one of them win, so a confirm after the claim answers 410
   and a confirm that won keeps its object.
2. pages through the objects under the upload prefixes, looks the keys of
   one page up in one query, and deletes (``DeleteObjects``, up to 1000 keys)
   the objects of expired, rejected and deleted uploads, and objects with no
   upload at all that are older than the cutoff. Objects of confirmed and
   pending uploads are never touched, nor anything outside the upload
   prefixes (``events/`` belongs to imports). Staged objects (``staging/``,
   where single-request URLs write) go by the same rules, and also once
   their upload is confirmed: confirm has moved the bytes, so whatever is
   staged then was sent again through an old URL. Listing, lookups and
   deletions run as a pipeline, in memory that does not grow with the bucket.
3. pages through the image variants (``variants/``) and deletes those older
   than the cutoff that no variant row records: their file or event is gone
   (the rows went with it), or their job stopped before recording them. A
   recorded variant is never touched; one being made is younger than the cutoff.
4. aborts uploads left unfinished for longer than the cutoff: multipart
   uploads, asking storage only about the keys the multipart ledger names,
   and the local backend's temporary files.

Every run leaves a ``cleanup_runs`` row and a log line.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from uploadsvc import metrics
from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import Conflict, QuotaExceeded, Unprocessable
from uploadsvc.job_queue import JobQueue, flush_after_commit
from uploadsvc.models.cleanup import CleanupRun
from uploadsvc.models.uploads import UploadStatus
from uploadsvc.profiles import STAGING_PREFIX, UPLOAD_PREFIXES, file_key_of
from uploadsvc.repository import cleanup as repository
from uploadsvc.repository import idempotency as idempotency_keys
from uploadsvc.repository.multipart_ledger import MultipartLedger
from uploadsvc.services.images import VARIANT_PREFIX
from uploadsvc.services.uploads import confirm_upload
from uploadsvc.storage import Storage
from uploadsvc.storage.base import DELETE_BATCH_SIZE, ListedObject

logger = logging.getLogger(__name__)

LEASE_NAME = "cleanup"
# Longer than any run should take; if the holder dies, the next run after this takes over.
LEASE_DURATION = dt.timedelta(hours=1)
_SWEPT_PREFIXES = (*UPLOAD_PREFIXES, STAGING_PREFIX)
# Just before the first swept prefix, and past the last one ("/" + 1 == "0").
_LISTING_START = min(_SWEPT_PREFIXES)[:-1] + "."
_LISTING_END = max(_SWEPT_PREFIXES)[:-1] + "0"
# Uploads in these states can never become files again: their objects go at once.
_FINISHED = frozenset(
    {UploadStatus.EXPIRED, UploadStatus.REJECTED, UploadStatus.DELETED, UploadStatus.ABORTED}
)
# A confirmed upload's bytes are at its file key; a staged object is left over.
_STAGED_FINISHED = _FINISHED | {UploadStatus.CONFIRMED}
# How far the listing runs ahead of the lookups, and how many delete batches
# may be in flight: enough to keep every stage busy, few enough that memory
# does not grow with the bucket.
_PAGES_AHEAD = 2
_DELETES_IN_FLIGHT = 4


@dataclass
class CleanupReport:
    run_id: uuid.UUID
    dry_run: bool
    outcome: str = "done"  # done | skipped (another run holds the lease) | failed
    scanned: int = 0
    deleted: int = 0
    expired: int = 0
    aborted: int = 0  # multipart uploads, and the local backend's leftover temporary files
    freed_bytes: int = 0
    # Pending uploads whose bytes were there: confirmed (or rejected) by the run.
    confirmed: int = 0
    rejected: int = 0

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        rescued = (
            f", confirmed {self.confirmed} and rejected {self.rejected} uploads never confirmed"
            if self.confirmed or self.rejected
            else ""
        )
        return (
            f"cleanup {self.outcome}: scanned {self.scanned} objects, {verb} {self.deleted} "
            f"({self.freed_bytes} bytes), expired {self.expired} pending uploads, "
            f"aborted {self.aborted} unfinished uploads{rescued}"
        )


async def run_cleanup(
    session_factory: async_sessionmaker[AsyncSession],
    storage: Storage,
    *,
    older_than: dt.timedelta,
    dry_run: bool = False,
    all_incomplete: bool = False,
    now: dt.datetime | None = None,
    settings: Settings | None = None,
    jobs: JobQueue | None = None,
) -> CleanupReport:
    """One cleanup run; ``now`` is injectable so tests can age objects.

    ``all_incomplete`` lists every incomplete multipart upload under the
    upload prefixes, not only those the multipart ledger names: for an
    operator, once, after upgrading from a version without the ledger.
    With ``settings`` (the profiles confirm checks against), pending uploads
    whose object arrived are confirmed before the rest expire; ``jobs``
    takes the scans, variants and webhooks those confirms defer.
    """
    started_at = utcnow()
    now = now or started_at
    cutoff = now - older_than
    report = CleanupReport(run_id=uuid.uuid4(), dry_run=dry_run)
    holder = report.run_id.hex
    if not await _take_lease(session_factory, holder):
        report.outcome = "skipped"
        await _record(session_factory, report, started_at, older_than)
        logger.info("cleanup skipped: another run holds the lease")
        return report
    try:
        if settings is not None and not dry_run:
            await _confirm_left_behind(session_factory, storage, settings, jobs, cutoff, report)
        report.expired = await _expire_pending(session_factory, cutoff, dry_run=dry_run)
        await _sweep(session_factory, storage, report, cutoff, dry_run=dry_run)
        report.aborted = await _abort_incomplete(
            session_factory, storage, cutoff, dry_run=dry_run, list_all=all_incomplete
        )
        if not dry_run:
            # Past their lifetime, idempotency keys are never replayed again.
            await idempotency_keys.delete_expired(session_factory, now=now)
    except Exception as exc:
        report.outcome = "failed"
        await _record(session_factory, report, started_at, older_than, error=type(exc).__name__)
        raise
    finally:
        await _release_lease(session_factory, holder)
    await _record(session_factory, report, started_at, older_than)
    logger.info("%s", report.summary())
    return report


async def _take_lease(session_factory: async_sessionmaker[AsyncSession], holder: str) -> bool:
    async with session_factory() as session, session.begin():
        return await repository.take_lease(
            session, name=LEASE_NAME, holder=holder, duration=LEASE_DURATION
        )


async def _release_lease(session_factory: async_sessionmaker[AsyncSession], holder: str) -> None:
    async with session_factory() as session, session.begin():
        await repository.release_lease(session, name=LEASE_NAME, holder=holder)


async def _confirm_left_behind(
    session_factory: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
    jobs: JobQueue | None,
    cutoff: dt.datetime,
    report: CleanupReport,
) -> None:
    """Confirm, as its client would have, each upload about to expire whose object is there.

    One session per upload, committed at once: a confirm holds no
    transaction while it asks storage (it begins at the state change), and
    one upload's outcome never waits for the next. A confirm racing this
    one is settled by the same conditional update as two clients' confirms.
    """
    async with session_factory() as session:
        left = await repository.pending_expired_before(session, cutoff=cutoff)
    for upload_id in left:
        async with session_factory() as session:
            upload = await repository.pending_upload(session, upload_id=upload_id)
            if upload is None:
                continue
            await session.commit()  # ends the read: nothing is held while storage answers
            try:
                await confirm_upload(session, storage, settings, upload=upload)
                await session.commit()
                report.confirmed += 1
            except Conflict:
                continue  # no object (or parts never completed): it expires below
            except (Unprocessable, QuotaExceeded):
                report.rejected += 1  # committed, its object deleted, as a client's confirm
            if jobs is not None:
                await flush_after_commit(session, jobs)


async def _expire_pending(
    session_factory: async_sessionmaker[AsyncSession], cutoff: dt.datetime, *, dry_run: bool
) -> int:
    """Claim pending uploads whose URL expired before ``cutoff``; their objects go in the sweep."""
    async with session_factory() as session, session.begin():
        if dry_run:
            return await repository.count_pending_expired_before(session, cutoff=cutoff)
        return await repository.expire_pending_before(session, cutoff=cutoff)


async def _sweep(
    session_factory: async_sessionmaker[AsyncSession],
    storage: Storage,
    report: CleanupReport,
    cutoff: dt.datetime,
    *,
    dry_run: bool,
) -> None:
    """List, look up and delete as a pipeline, each stage working while the others wait.

    The listing runs ahead of the lookups, and batches are deleted in the
    background while the following pages are listed and looked up.
    Deleting after the lookup is safe: a finished upload never changes
    state again, and no row appears for an object already past the cutoff
    (a row comes before its presigned PUT, or right after a direct upload).
    Memory holds a few pages and batches, however large the bucket. Then
    the variants, a page at a time.
    """
    doomed: list[ListedObject] = []
    async with (
        _page_lookups(session_factory, cutoff, dry_run=dry_run, removable=_FINISHED) as orphans_in,
        _page_lookups(
            session_factory, cutoff, dry_run=dry_run, removable=_STAGED_FINISHED
        ) as stale_in,
        _Deletions(storage, report, dry_run=dry_run) as deletions,
    ):
        async for page in _upload_pages(storage):
            ours = [listed for listed in page if listed.key.startswith(UPLOAD_PREFIXES)]
            staged = [listed for listed in page if listed.key.startswith(STAGING_PREFIX)]
            report.scanned += len(ours) + len(staged)
            if ours:
                doomed += await orphans_in(ours)
            if staged:
                doomed += await stale_in(staged)
            while len(doomed) >= DELETE_BATCH_SIZE:
                await deletions.submit(doomed[:DELETE_BATCH_SIZE])
                doomed = doomed[DELETE_BATCH_SIZE:]
        if doomed:
            await deletions.submit(doomed)
        async for page in storage.list_pages(VARIANT_PREFIX):
            report.scanned += len(page)
            if orphans := await _variant_orphans(session_factory, page, cutoff):
                await deletions.submit(orphans)


async def _variant_orphans(
    session_factory: async_sessionmaker[AsyncSession], page: list[ListedObject], cutoff: dt.datetime
) -> list[ListedObject]:
    """The variant objects of one listing page past the cutoff that no row records."""
    async with session_factory() as session:
        recorded = await repository.recorded_variant_keys(
            session, keys=[listed.key for listed in page]
        )
    return [
        listed for listed in page if listed.key not in recorded and listed.last_modified < cutoff
    ]


async def _upload_pages(storage: Storage) -> AsyncIterator[list[ListedObject]]:
    """The listing pages of the upload prefixes, listed ahead by a task of their own.

    One listing for all upload prefixes: it starts just before the first
    (skipping events/, which sorts earlier) and stops after the page that
    passes the last, so N upload objects cost ceil(N/1000) requests. The
    listing waits for room in a short queue, never for a lookup.
    """
    pages = storage.list_pages(start_after=_LISTING_START)
    ready: asyncio.Queue[list[ListedObject] | Exception | None] = asyncio.Queue(_PAGES_AHEAD)

    async def produce() -> None:
        try:
            async for page in pages:
                await ready.put(page)
                if page and page[-1].key >= _LISTING_END:
                    break
        except Exception as exc:  # handed to the consumer, raised there
            await ready.put(exc)
        else:
            await ready.put(None)

    producer = asyncio.create_task(produce())
    try:
        while (page := await ready.get()) is not None:
            if isinstance(page, Exception):
                raise page
            yield page
    finally:
        producer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await producer
        closer = getattr(pages, "aclose", None)
        if closer is not None:
            await closer()


class _Deletions:
    """Deletes batches in the background, ``_DELETES_IN_FLIGHT`` at most at once.

    Several at once, because deleting can be slower than listing (a local
    file system frees blocks through its journal, which concurrent unlinks
    share); bounded, so memory stays flat and a slow store slows the
    listing down instead of queueing the whole bucket.
    """

    def __init__(self, storage: Storage, report: CleanupReport, *, dry_run: bool) -> None:
        self._storage = storage
        self._report = report
        self._dry_run = dry_run
        self._running: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> _Deletions:
        return self

    async def submit(self, batch: list[ListedObject]) -> None:
        while len(self._running) >= _DELETES_IN_FLIGHT:
            done, self._running = await asyncio.wait(
                self._running, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                task.result()  # a failed deletion fails the run
        self._running.add(asyncio.create_task(self._delete(batch)))

    async def _delete(self, batch: list[ListedObject]) -> None:
        freed = sum(listed.size for listed in batch)
        if not self._dry_run:
            await self._storage.delete_many([listed.key for listed in batch])
            metrics.cleanup_deleted(objects=len(batch), size_bytes=freed)
        self._report.deleted += len(batch)
        self._report.freed_bytes += freed

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        running, self._running = self._running, set()
        if exc_type is not None:
            # The run failed: what is in flight may or may not be deleted;
            # the next run lists whatever is left.
            for task in running:
                task.cancel()
        outcomes = await asyncio.gather(*running, return_exceptions=True)
        if exc_type is None:
            for outcome in outcomes:
                if isinstance(outcome, BaseException):
                    raise outcome


@contextlib.asynccontextmanager
async def _page_lookups(
    session_factory: async_sessionmaker[AsyncSession],
    cutoff: dt.datetime,
    *,
    dry_run: bool,
    removable: frozenset[UploadStatus],
) -> AsyncIterator[Callable[[list[ListedObject]], Awaitable[list[ListedObject]]]]:
    """A function that picks the orphans of one listing page with one query.

    A staged object is looked up by the file key it stands for.
    """
    # Rows whose object goes whatever its age: `removable` uploads and, in a
    # dry run (which claimed nothing), the pending uploads the claim would expire.
    async with repository.open_page_lookup(
        session_factory, removable=removable, url_expired_before=cutoff if dry_run else None
    ) as unprotected:

        async def orphans_in(page: list[ListedObject]) -> list[ListedObject]:
            found = await unprotected([file_key_of(listed.key) for listed in page])
            return [
                page[position]
                for position, has_row in found
                # No upload ever pointed here: only the cutoff protects it.
                if has_row or page[position].last_modified < cutoff
            ]

        yield orphans_in


async def _abort_incomplete(
    session_factory: async_sessionmaker[AsyncSession],
    storage: Storage,
    cutoff: dt.datetime,
    *,
    dry_run: bool,
    list_all: bool,
) -> int:
    """Abort the uploads begun before the cutoff that nothing finished.

    Multipart uploads first. Where storage keeps a ledger of them (S3 with
    PostgreSQL), the ledger names the keys where one may be left, and
    storage is asked about those keys only: a run whose ledger holds nothing
    old sends no request for this. Elsewhere, or with ``list_all``, the
    incomplete uploads are listed (a scan of folders on the local backend).
    Then the local backend's temporary files of uploads a stopped process left.
    """
    ledger = MultipartLedger(session_factory)
    due_keys: list[str] = []
    if storage.tracks_multipart_uploads and not list_all:
        due_keys = await ledger.due(cutoff)  # not pending uploads' keys
        due = [
            upload
            for key in due_keys
            for upload in await storage.list_incomplete_uploads(key)
            if upload.key == key  # not a longer key that begins with this one
        ]
    else:
        listed = [
            upload
            for upload in await storage.list_incomplete_uploads("")
            if upload.key.startswith(UPLOAD_PREFIXES) and upload.initiated < cutoff
        ]
        # A client may take longer than the cutoff over a multipart upload it
        # keeps asking part URLs for: while its row is pending, its parts stay.
        # (Once its URLs lapse, the expire claim at the start of a run ends it.)
        async with session_factory() as session:
            in_progress = await repository.pending_multipart_upload_ids(
                session, multipart_upload_ids=[upload.multipart_upload_id for upload in listed]
            )
        due = [upload for upload in listed if upload.multipart_upload_id not in in_progress]
    if not dry_run:
        for upload in due:
            await storage.abort_incomplete_upload(upload)
        for key in due_keys:
            await ledger.forget(key)
    return len(due) + await storage.remove_leftover_temporaries(cutoff, dry_run=dry_run)


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
        await repository.add_run(
            session,
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
            ),
        )
