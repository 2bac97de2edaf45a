"""Open Event imports: accept an archive, run the job, report its task.

The rules are in docs/api.md, "Event import".

``submit_*`` record an import job and enqueue it after the commit.
``run_import`` is the job itself (arq worker, or this process without
Redis): it copies the archive to a temporary file and checks it, then reads
its JSON as a stream of row batches, parsed and mapped in a worker thread
(``openevent.ImportStream``). Each batch's media are stored and its rows
written with bulk inserts, all in one transaction, so the worker's memory
stays bounded however large the archive is. All or nothing: on failure no
event row remains and the media objects it stored are deleted.

A failure has one of two kinds of cause. The archive's own (a broken zip,
data that cannot be imported) fails the job at once, FAILURE with an error
naming the file, record and stage. A transient one (the database or storage
unreachable, a timeout) raises ``ImportInterrupted``: the job's runner tries
it again after a backoff, until ``import_max_tries`` runs; the last run
records FAILURE instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
from anyio import to_thread
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import content_types as ct
from uploadsvc import metrics
from uploadsvc.db import utcnow
from uploadsvc.errors import NotFound, StorageError, Unprocessable
from uploadsvc.formdata import FormReader
from uploadsvc.job_queue import flush_after_commit
from uploadsvc.models.events import ImportJob, ImportState, Progress
from uploadsvc.models.uploads import UploadStatus
from uploadsvc.openevent.archive import ArchiveError, ArchiveLimits, OpenEventArchive
from uploadsvc.openevent.mapping import (
    MAX_WARNINGS,
    MEDIA_TYPES,
    TABLES,
    ImportDataError,
    ImportStream,
    RowBatch,
)
from uploadsvc.profiles import Purpose, profile_for
from uploadsvc.repository import events
from uploadsvc.repository import imports as repository
from uploadsvc.resources import Resources
from uploadsvc.security import Principal
from uploadsvc.services import images, scanning, webhooks
from uploadsvc.services.incoming_files import IncomingFile, record_all_or_nothing, store_file
from uploadsvc.services.uploads import find_upload

logger = logging.getLogger(__name__)

# Progress (and heartbeat) writes while rows stream in: at most this often.
PROGRESS_EVERY_SECONDS = 0.5
# Keys per storage delete request (S3's maximum).
DELETE_BATCH = 1000

# Reads of an archive file given to `uploadsvc import`.
ARCHIVE_READ_BYTES = 1024 * 1024
QUEUED = Progress("queued", 0, 0, "Waiting for a worker")
DOWNLOAD = Progress("download", 0, 1, "Downloading the archive")
CHECK = Progress("archive", 0, 1, "Checking the archive")
DONE = Progress("done", 1, 1, "Imported")


class ImportInterrupted(Exception):
    """The job stopped for a reason outside the archive (the database or storage
    unreachable, a timeout) and left nothing behind: run it again later."""


class DeadlineExceeded(TimeoutError):
    """The run took longer than ``job_timeout_seconds`` (a transient failure too:
    a busy database or worker; a run that never fits fails at its last try)."""


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` says a dependency is down or slow, rather than that the input is bad."""
    if isinstance(exc, StorageError | OSError | TimeoutError | scanning.ScanInterrupted):
        # ScanInterrupted: clamd is down, or the archive's scan is not done yet.
        # StorageError is what storage/ makes of S3's and the disk's outages;
        # OSError covers refused and reset connections (asyncpg raises them as
        # they are) and TimeoutError is asyncio's too.
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        # Integrity and data errors are the statement's fault; a lost or
        # refused connection, a server shutting down or a statement timeout
        # are the database's state.
        return exc.connection_invalidated or isinstance(
            exc, sa_exc.OperationalError | sa_exc.InterfaceError
        )
    # The pool waited too long for a connection; a connection died on checkout.
    return isinstance(exc, sa_exc.TimeoutError | sa_exc.DisconnectionError)


async def _new_job(session: AsyncSession, *, principal: Principal, source_key: str) -> ImportJob:
    return await repository.add_job(
        session, owner_id=principal.user_id, source_key=source_key, progress=QUEUED
    )


async def submit_import(
    session: AsyncSession, resources: Resources, *, principal: Principal, file_key: str
) -> ImportJob:
    """Import a confirmed ``event-import`` upload of the caller."""
    upload = await find_upload(session, principal=principal, file_key=file_key)
    if upload.status is not UploadStatus.CONFIRMED:
        raise NotFound("No such confirmed upload.", code="upload_not_found")
    if upload.purpose != Purpose.EVENT_IMPORT.value:
        raise Unprocessable(
            "Only uploads with purpose 'event-import' can be imported.", code="wrong_purpose"
        )
    job = await _new_job(session, principal=principal, source_key=upload.file_key)
    return await enqueue_after_commit(session, resources, job)


async def enqueue_after_commit(
    session: AsyncSession, resources: Resources, job: ImportJob
) -> ImportJob:
    # The worker must find the row: commit first, then enqueue. If enqueueing
    # fails, the job stays PENDING and the reconciler enqueues it later.
    await session.commit()
    try:
        await resources.jobs.enqueue_import(job.id)
    except Exception:
        logger.exception("could not enqueue import job %s; the reconciler will", job.id)
    return job


async def submit_archive_upload(
    session: AsyncSession, resources: Resources, *, principal: Principal, form: FormReader
) -> ImportJob:
    """``POST /v1/events/import/json``: the zip in the part ``file``, streamed to storage."""

    async def file_parts() -> AsyncIterator[IncomingFile]:
        while (part := await form.next_part()) is not None:
            if part.name == "file":
                yield IncomingFile(part.filename or "event.zip", None, form.chunks())

    job = await _archive_job(session, resources, principal=principal, files=file_parts())
    return await enqueue_after_commit(session, resources, job)


async def submit_archive_file(
    session: AsyncSession, resources: Resources, *, principal: Principal, path: Path
) -> ImportJob:
    """``uploadsvc import``: the zip at ``path``, stored as an upload of ``principal``.

    Committed, not enqueued: the command runs the job itself (``run_import``).
    """

    async def the_file() -> AsyncIterator[IncomingFile]:
        yield IncomingFile(path.name, None, _file_chunks(path))

    return await _archive_job(session, resources, principal=principal, files=the_file())


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(ARCHIVE_READ_BYTES):
            yield chunk


async def _archive_job(
    session: AsyncSession,
    resources: Resources,
    *,
    principal: Principal,
    files: AsyncIterator[IncomingFile],
) -> ImportJob:
    """Store the first of ``files`` as an ``event-import`` upload and stage its import job.

    Both rows are written in one short commit once the file is stored
    (``record_all_or_nothing``); whatever fails first leaves no object.
    """
    settings = resources.settings
    profile = profile_for(settings, Purpose.EVENT_IMPORT)
    upload = None
    try:
        async for incoming in files:
            if upload is None:
                upload = await store_file(
                    session,
                    resources.storage,
                    settings,
                    principal=principal,
                    profile=profile,
                    incoming=incoming,
                )
        if upload is None:
            raise Unprocessable("The form has no part named 'file'.", code="missing_file")
        # Only now, with the body read whole, does the session touch the
        # database: the job's row and the archive's go in one short commit.
        job = await _new_job(session, principal=principal, source_key=upload.file_key)
    except BaseException:
        if upload is not None:
            with contextlib.suppress(StorageError):
                await resources.storage.delete(upload.file_key)
        raise
    await record_all_or_nothing(session, resources.storage, [upload])
    return job


# --- the job -------------------------------------------------------------------


class _Run:
    """One run of an import job: what it has stored, and where it is."""

    def __init__(self, resources: Resources, job: ImportJob, *, last_try: bool) -> None:
        self.resources = resources
        self.job = job
        self.last_try = last_try
        self.stored: list[str] = []
        # The image media stored: (the id of the row they belong to, their key).
        self.images: list[tuple[uuid.UUID, str]] = []
        self.stage = DOWNLOAD
        self.started = time.monotonic()

    def finished(self, state: str) -> None:
        metrics.import_finished(state=state, duration_seconds=time.monotonic() - self.started)

    async def report(self, progress: Progress) -> None:
        self.stage = progress
        async with self.resources.session_factory() as session, session.begin():
            await repository.set_progress(session, job_id=self.job.id, progress=progress)


async def run_import(resources: Resources, job_id: uuid.UUID, *, job_try: int = 1) -> None:
    """One run of the import job ``job_id``, the ``job_try``-th of its runner.

    Safe to run again for the same job: it never makes a second event. Raises
    ``ImportInterrupted`` after a transient failure unless this is the last
    try (of the runner's, or of the job's recorded attempts), which records
    FAILURE instead.
    """
    max_tries = resources.settings.import_max_tries
    try:
        job = await _start(resources, job_id, max_tries=max_tries)
    except Exception as exc:
        if is_transient(exc):
            logger.warning("import job %s could not start: %r", job_id, exc)
            raise ImportInterrupted(f"could not start: {exc!r}") from exc
        raise
    if job is None:
        return
    run = _Run(resources, job, last_try=max(job_try, job.attempts) >= max_tries)
    workdir = Path(await to_thread.run_sync(tempfile.mkdtemp, None, "uploadsvc-import-"))
    try:
        await _within_deadline(run, workdir)
    except (ArchiveError, ImportDataError) as exc:
        await _delete_stored(resources, run.stored)
        await _fail(run, _error_of(exc))
    except NotFound:
        await _delete_stored(resources, run.stored)
        await _fail(
            run, {"file": None, "record_id": None, "message": "The archive is not in storage."}
        )
    except sa_exc.IntegrityError:
        await _delete_stored(resources, run.stored)
        if await _has_event(resources, job_id):
            # Another run of the same job committed its event first.
            logger.info("import job %s already produced its event", job_id)
        else:
            logger.exception("import job %s failed", job_id)
            await _fail(run, {"file": None, "record_id": None, "message": "Internal error"})
    except Exception as exc:
        await _delete_stored(resources, run.stored)
        if not is_transient(exc):
            logger.exception("import job %s failed", job_id)
            await _fail(run, {"file": None, "record_id": None, "message": "Internal error"})
        elif run.last_try:
            logger.error("import job %s gave up: %r", job_id, exc)
            reason = (
                str(exc)
                if isinstance(exc, DeadlineExceeded)
                else "the database or storage was unavailable"
            )
            tries = max(job_try, job.attempts)
            message = f"Gave up after {tries} attempt{'s' if tries > 1 else ''}: {reason}."
            await _fail(run, {"file": None, "record_id": None, "message": message})
        else:
            logger.warning("import job %s hit a transient error, to be retried: %r", job_id, exc)
            run.finished("RETRY")
            raise ImportInterrupted(f"transient failure: {exc!r}") from exc
    except BaseException:
        # Cancelled (arq's job timeout, a shutdown): nothing may stay behind.
        await asyncio.shield(_delete_stored(resources, run.stored))
        raise
    else:
        run.finished("SUCCESS")
        await images.enqueue_media_variants(resources, run.images)
    finally:
        await to_thread.run_sync(shutil.rmtree, workdir, True)


async def _start(resources: Resources, job_id: uuid.UUID, *, max_tries: int) -> ImportJob | None:
    """Mark the job STARTED; None when there is nothing (more) to do."""
    async with resources.session_factory() as session, session.begin():
        job = await repository.lock_job(
            session, job_id=job_id, for_update=not resources.settings.uses_sqlite
        )
        if job is None or job.state in (ImportState.SUCCESS, ImportState.FAILURE):
            return None
        if job.attempts >= max_tries:
            # A job that ended its worker every time (killed, out of memory)
            # comes back through the reconciler: count those starts too.
            error = {
                "file": None,
                "record_id": None,
                "message": f"Gave up after {job.attempts} attempts.",
            }
            await repository.mark_failed(session, job_id=job_id, error=error, progress=None)
            return None
        now = utcnow()
        job.state = ImportState.STARTED
        job.attempts += 1
        job.started_at = job.started_at or now
        job.heartbeat_at = now
        return job


async def _has_event(resources: Resources, job_id: uuid.UUID) -> bool:
    async with resources.session_factory() as session:
        return await events.event_of_import_job(session, job_id=job_id) is not None


def _next(batches: Iterator[RowBatch]) -> RowBatch | None:
    return next(batches, None)


def _parse_next(batches: Iterator[RowBatch]) -> asyncio.Future[RowBatch | None]:
    return asyncio.ensure_future(to_thread.run_sync(_next, batches))


async def _within_deadline(run: _Run, workdir: Path) -> None:
    """The run's work, stopped at ``job_timeout_seconds``. arq's own timeout of the
    job is a little longer (workers/settings.py): this one ends first, so the
    run cleans up and asks to be retried rather than being cancelled."""
    seconds = run.resources.settings.job_timeout_seconds
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            await _download_and_import(run, workdir)
    except TimeoutError as exc:
        if deadline.expired():
            raise DeadlineExceeded(f"the import took longer than {seconds} s") from exc
        raise


async def _download_and_import(run: _Run, workdir: Path) -> None:
    resources = run.resources
    await run.report(DOWNLOAD)
    try:
        await scanning.check_import_archive(resources, run.job.source_key)
    except scanning.ArchiveInfected as exc:
        raise ImportDataError(str(exc)) from None
    archive_path = workdir / "archive.zip"
    await resources.storage.download_to(run.job.source_key, archive_path)
    run.stage = CHECK
    limits = ArchiveLimits(max_compressed_bytes=resources.settings.max_event_import_bytes)
    archive = await to_thread.run_sync(OpenEventArchive.open, archive_path, limits)
    try:
        stream = ImportStream(
            archive, event_id=uuid.uuid4(), owner_id=run.job.owner_id, import_job_id=run.job.id
        )
        await _import(run, archive, stream)
    finally:
        await to_thread.run_sync(archive.close)


async def _import(run: _Run, archive: OpenEventArchive, stream: ImportStream) -> None:
    """Batch by batch: parse and map in a thread, store the media, insert the rows;
    one transaction from the event row to the job's SUCCESS."""
    resources = run.resources
    media_warnings: list[str] = []
    # SQLite holds its write lock until the commit: a progress write from another
    # connection would wait for it (and time out), so only PostgreSQL reports
    # progress while the rows stream in.
    reporting = not resources.settings.uses_sqlite
    reported = time.monotonic()
    batches = stream.batches()
    # Each batch is parsed in a worker thread while the one before it is
    # written, so the parser's CPU time overlaps with PostgreSQL's. Two
    # batches at most are in memory.
    parsing = _parse_next(batches)
    try:
        async with resources.session_factory() as session, session.begin():
            while True:
                try:
                    batch = await parsing
                finally:
                    # Where the parser is: the stage a parse error is reported in.
                    run.stage = stream.progress
                if batch is None:
                    break
                run.stage = batch.progress
                parsing = _parse_next(batches)
                await _store_media(run, archive, batch, media_warnings)
                for table in TABLES:
                    await repository.insert_rows(
                        session, table=table, rows=batch.rows.get(table, [])
                    )
                if reporting and time.monotonic() - reported >= PROGRESS_EVERY_SECONDS:
                    await run.report(batch.progress)
                    reported = time.monotonic()
            warnings = stream.warnings + media_warnings
            if len(warnings) > MAX_WARNINGS:
                warnings = [*warnings[:MAX_WARNINGS], "more warnings were left out"]
            images.stage_media_variants(
                session, resources.settings, event_id=stream.event_id, media=run.images
            )
            result = {
                "id": str(stream.event_id),
                "event_name": stream.event_name,
                "url": f"/v1/events/{stream.event_id}",
                "counts": stream.counts,
                "warnings": warnings,
            }
            await repository.mark_succeeded(
                session, job_id=run.job.id, result=result, progress=DONE
            )
            webhooks.emit(
                session, resources.settings, "import.succeeded", _import_data(run, result=result)
            )
        await flush_after_commit(session, resources.jobs)
    finally:
        # A generator must never run in two threads at once: let the parse in
        # flight end (its batch or error no longer matters) before closing it.
        await asyncio.gather(parsing, return_exceptions=True)
        await to_thread.run_sync(batches.close)


async def _store_media(
    run: _Run, archive: OpenEventArchive, batch: RowBatch, warnings: list[str]
) -> None:
    """Copy the media this batch's rows point at, and set their *_key columns."""
    if not batch.media:
        return
    rows = {
        row["id"]: row
        for table in ("events", "speakers", "sponsors", "sessions")
        for row in batch.rows.get(table, ())
    }
    for ref in batch.media:
        try:
            data = await to_thread.run_sync(archive.media, ref.path)
        except ArchiveError as exc:
            # A batch can hold rows of several files: the stage is the record's.
            run.stage = Progress(ref.file, 0, 0, f"Storing the media of {ref.file}")
            raise ImportDataError(
                f"{ref.label}: {exc}", file=ref.file, record_id=ref.record_id
            ) from None
        if data is None:
            warnings.append(f"{ref.label}: {ref.path} is not in the archive; left empty")
            continue
        detected = await ct.detect_type(data)
        try:
            content_type = ct.decide_type(None, detected, MEDIA_TYPES[ref.kind])
        except ct.TypeRefused:
            warnings.append(f"{ref.label}: {ref.path} is {detected}, not {ref.kind}; skipped")
            continue
        # Stored media are served: scanned first (docs/api.md, "Malware scanning").
        refusal = await scanning.scan_media(run.resources.settings, data)
        if refusal is not None:
            warnings.append(f"{ref.label}: {ref.path} {refusal}; skipped")
            continue
        await run.resources.storage.put_stream(
            ref.key, content_type=content_type, chunks=_once(data)
        )
        run.stored.append(ref.key)
        if content_type in images.IMAGE_TYPES:
            run.images.append((uuid.UUID(str(ref.row_id)), ref.key))
        rows[ref.row_id][ref.column] = ref.key


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _delete_stored(resources: Resources, keys: list[str]) -> None:
    for start in range(0, len(keys), DELETE_BATCH):
        with contextlib.suppress(StorageError):
            await resources.storage.delete_many(keys[start : start + DELETE_BATCH])


def _error_of(exc: ArchiveError | ImportDataError) -> dict[str, Any]:
    if isinstance(exc, ArchiveError):
        return {"file": exc.entry, "record_id": None, "message": exc.message}
    return {"file": exc.file, "record_id": exc.record_id, "message": exc.message}


async def _fail(run: _Run, error: dict[str, Any]) -> None:
    """Record FAILURE and the stage it happened in; a database that cannot take
    the record makes the run transient like any other outage."""
    stage = run.stage
    progress = Progress(stage.stage, stage.done, stage.total, f"Failed: {error['message']}")
    try:
        async with run.resources.session_factory() as session, session.begin():
            await repository.mark_failed(session, job_id=run.job.id, error=error, progress=progress)
            webhooks.emit(
                session, run.resources.settings, "import.failed", _import_data(run, error=error)
            )
        await flush_after_commit(session, run.resources.jobs)
        run.finished("FAILURE")
    except Exception as exc:
        if is_transient(exc) and not run.last_try:
            logger.warning("import job %s could not record its failure: %r", run.job.id, exc)
            raise ImportInterrupted(f"could not record the failure: {exc!r}") from exc
        raise


def _import_data(run: _Run, **outcome: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` of the import events: the task, its owner, and its result or error."""
    return {"task_id": str(run.job.id), "owner_id": run.job.owner_id, **outcome}


# --- reconciling with the queue ----------------------------------------------------


async def reconcile_imports(resources: Resources, *, stale_after: dt.timedelta) -> int:
    """Re-enqueue import jobs the queue lost (Redis flushed, worker killed); returns how many."""
    cutoff = utcnow() - stale_after
    async with resources.session_factory() as session:
        stale = await repository.stale_job_ids(session, cutoff=cutoff)
    requeued = 0
    for job_id in stale:
        if await resources.jobs.is_queued_or_running(job_id):
            continue
        async with resources.session_factory() as session, session.begin():
            await repository.touch(session, job_id=job_id)
        await resources.jobs.enqueue_import(job_id)
        requeued += 1
    if requeued:
        logger.info("re-enqueued %d lost import jobs", requeued)
    return requeued
