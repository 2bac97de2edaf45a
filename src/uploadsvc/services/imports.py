"""Open Event imports: accept an archive, run the job, report its task.

The rules are in docs/api.md, "Event import".

``submit_*`` record an import job and enqueue it after the commit.
``run_import`` is the job itself (arq worker, or this process without
Redis): it copies the archive to a temporary file and checks it, then reads
its JSON as a stream of row batches, parsed and mapped in a worker thread
(``openevent.ImportStream``). Each batch's media are stored and its rows
written with bulk inserts, all in one transaction, so the worker's memory
stays bounded however large the archive is. All or nothing: on failure no
event row remains and the media objects it stored are deleted; the job
records an error naming the file and record.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from anyio import to_thread
from sqlalchemy import JSON, Table, Uuid, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import content_types as ct
from uploadsvc.db import utcnow
from uploadsvc.errors import NotFound, StorageError, Unprocessable
from uploadsvc.formdata import FormReader
from uploadsvc.models.events import Event, ImportJob, ImportState
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
from uploadsvc.resources import Resources
from uploadsvc.security import Principal
from uploadsvc.services.incoming_files import IncomingFile, store_file
from uploadsvc.services.uploads import find_upload

logger = logging.getLogger(__name__)

# Give up (FAILURE) after this many starts; arq retries transient errors until then.
MAX_ATTEMPTS = 5
# Rows per INSERT statement.
INSERT_BATCH = 1000
# Progress (and heartbeat) writes while rows stream in: at most this often.
PROGRESS_EVERY_SECONDS = 0.5


def task_url(job: ImportJob) -> str:
    return f"/v1/tasks/{job.id}"


async def _new_job(session: AsyncSession, *, principal: Principal, source_key: str) -> ImportJob:
    job = ImportJob(
        id=uuid.uuid4(),
        owner_id=principal.user_id,
        source_key=source_key,
        state=ImportState.PENDING,
        progress={"stage": "queued", "done": 0, "total": 0, "message": "Waiting for a worker"},
        attempts=0,
        created_at=utcnow(),
        heartbeat_at=utcnow(),
    )
    session.add(job)
    await session.flush()
    return job


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
        logger.exception("could not enqueue import %s; the reconciler will", job.id)
    return job


async def submit_archive_upload(
    session: AsyncSession, resources: Resources, *, principal: Principal, form: FormReader
) -> ImportJob:
    """``POST /v1/events/import/json``: the zip in the part ``file``, streamed to storage."""
    settings = resources.settings
    profile = profile_for(settings, Purpose.EVENT_IMPORT)
    upload = None
    try:
        while (part := await form.next_part()) is not None:
            if part.name == "file" and upload is None:
                incoming = IncomingFile(part.filename or "event.zip", None, form.chunks())
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
        job = await _new_job(session, principal=principal, source_key=upload.file_key)
        await session.commit()
    except BaseException:
        if upload is not None:
            with contextlib.suppress(StorageError):
                await resources.storage.delete(upload.file_key)
        raise
    return await enqueue_after_commit(session, resources, job)


# --- the job -------------------------------------------------------------------


class _Progress:
    def __init__(self, resources: Resources, job_id: uuid.UUID) -> None:
        self.resources = resources
        self.job_id = job_id

    async def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        async with self.resources.session_factory() as session, session.begin():
            await session.execute(
                update(ImportJob)
                .where(ImportJob.id == self.job_id)
                .values(
                    progress={"stage": stage, "done": done, "total": total, "message": message},
                    heartbeat_at=utcnow(),
                )
            )


async def run_import(resources: Resources, job_id: uuid.UUID) -> None:
    """The import job. Safe to run again for the same job: it never makes a second event."""
    job = await _start(resources, job_id)
    if job is None:
        return
    progress = _Progress(resources, job_id)
    workdir = Path(await to_thread.run_sync(tempfile.mkdtemp, None, "uploadsvc-import-"))
    stored: list[str] = []
    try:
        await progress("download", 0, 1, "Downloading the archive")
        archive_path = workdir / "archive.zip"
        await resources.storage.download_to(job.source_key, archive_path)
        limits = ArchiveLimits(max_compressed_bytes=resources.settings.max_event_import_bytes)
        archive = await to_thread.run_sync(OpenEventArchive.open, archive_path, limits)
        try:
            stream = ImportStream(
                archive, event_id=uuid.uuid4(), owner_id=job.owner_id, import_job_id=job.id
            )
            await _import(resources, job, archive, stream, stored, progress)
        finally:
            await to_thread.run_sync(archive.close)
    except (ArchiveError, ImportDataError) as exc:
        await _delete(resources, stored)
        await _fail(resources, job_id, _error_of(exc))
    except IntegrityError:
        # Another run of the same job committed its event first.
        await _delete(resources, stored)
        logger.info("import %s already produced its event", job_id)
    except (StorageError, OSError, ConnectionError) as exc:
        # Transient: arq retries the job (the reconciler, without Redis).
        await _delete(resources, stored)
        logger.warning("import %s hit a transient error: %s", job_id, exc)
        raise
    except Exception:
        await _delete(resources, stored)
        logger.exception("import %s failed", job_id)
        await _fail(
            resources, job_id, {"file": None, "record_id": None, "message": "Internal error"}
        )
    finally:
        await to_thread.run_sync(shutil.rmtree, workdir, True)


async def _start(resources: Resources, job_id: uuid.UUID) -> ImportJob | None:
    """Mark the job STARTED; None when there is nothing (more) to do."""
    async with resources.session_factory() as session, session.begin():
        job = await session.get(ImportJob, job_id, with_for_update=not _sqlite(resources))
        if job is None or job.state in (ImportState.SUCCESS, ImportState.FAILURE):
            return None
        if job.attempts >= MAX_ATTEMPTS:
            job.state = ImportState.FAILURE
            job.error = {
                "file": None,
                "record_id": None,
                "message": f"Gave up after {job.attempts} attempts.",
            }
            job.finished_at = utcnow()
            return None
        job.state = ImportState.STARTED
        job.attempts += 1
        job.started_at = job.started_at or utcnow()
        job.heartbeat_at = utcnow()
        return job


def _sqlite(resources: Resources) -> bool:
    return resources.settings.uses_sqlite


def _next(batches: Iterator[RowBatch]) -> RowBatch | None:
    return next(batches, None)


def _parse_next(batches: Iterator[RowBatch]) -> asyncio.Future[RowBatch | None]:
    return asyncio.ensure_future(to_thread.run_sync(_next, batches))


async def _import(
    resources: Resources,
    job: ImportJob,
    archive: OpenEventArchive,
    stream: ImportStream,
    stored: list[str],
    progress: _Progress,
) -> None:
    """Batch by batch: parse and map in a thread, store the media, insert the rows;
    one transaction from the event row to the job's SUCCESS."""
    media_warnings: list[str] = []
    # SQLite holds its write lock until the commit: a progress write from another
    # connection would wait for it (and time out), so only PostgreSQL reports
    # progress while the rows stream in.
    reporting = not _sqlite(resources)
    reported = time.monotonic()
    batches = stream.batches()
    # Each batch is parsed in a worker thread while the one before it is
    # written, so the parser's CPU time overlaps with PostgreSQL's. Two
    # batches at most are in memory.
    parsing = _parse_next(batches)
    try:
        async with resources.session_factory() as session, session.begin():
            while (batch := await parsing) is not None:
                parsing = _parse_next(batches)
                await _store_media(resources, archive, batch, stored, media_warnings)
                for table in TABLES:
                    await _insert(session, table, batch.rows.get(table))
                if reporting and time.monotonic() - reported >= PROGRESS_EVERY_SECONDS:
                    step = batch.progress
                    await progress(
                        step.stage,
                        min(step.done, step.total),
                        step.total,
                        f"Importing {step.stage} ({step.records} read)",
                    )
                    reported = time.monotonic()
            warnings = stream.warnings + media_warnings
            if len(warnings) > MAX_WARNINGS:
                warnings = [*warnings[:MAX_WARNINGS], "more warnings were left out"]
            await session.execute(
                update(ImportJob)
                .where(ImportJob.id == job.id)
                .values(
                    state=ImportState.SUCCESS,
                    result={
                        "id": str(stream.event_id),
                        "event_name": stream.event_name,
                        "url": f"/v1/events/{stream.event_id}",
                        "counts": stream.counts,
                        "warnings": warnings,
                    },
                    progress={"stage": "done", "done": 1, "total": 1, "message": "Imported"},
                    finished_at=utcnow(),
                    heartbeat_at=utcnow(),
                )
            )
    finally:
        # A generator must never run in two threads at once: let the parse in
        # flight end (its batch or error no longer matters) before closing it.
        await asyncio.gather(parsing, return_exceptions=True)
        await to_thread.run_sync(batches.close)


async def _store_media(
    resources: Resources,
    archive: OpenEventArchive,
    batch: RowBatch,
    stored: list[str],
    warnings: list[str],
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
        await resources.storage.put_stream(ref.key, content_type=content_type, chunks=_once(data))
        stored.append(ref.key)
        rows[ref.row_id][ref.column] = ref.key


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _insert(session: AsyncSession, table: str, rows: list[dict[str, Any]] | None) -> None:
    if not rows:
        return
    if table == Event.__tablename__:
        # One row, through SQLAlchemy so that its column defaults (created_at) apply.
        await session.execute(insert(Event), _as_uuids(Event.metadata.tables[table], rows))
        return
    await _bulk_insert(session, Event.metadata.tables[table], rows)


def _as_uuids(table: Table, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for SQLAlchemy, whose Uuid type wants uuid.UUID where the stream has text."""
    names = [column.name for column in table.columns if isinstance(column.type, Uuid)]
    return [
        {**row, **{name: uuid.UUID(row[name]) for name in names if row.get(name) is not None}}
        for row in rows
    ]


async def _bulk_insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # COPY is PostgreSQL's bulk path: an order of magnitude faster than
        # multi-row INSERTs, and inside the same transaction.
        raw = await connection.get_raw_connection()
        columns = [column.name for column in table.columns]
        records = [tuple(map(row.get, columns)) for row in rows]
        if any(isinstance(column.type, JSON) for column in table.columns):
            records = [tuple(map(_copy_value, record)) for record in records]
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns
        )
        return
    for start in range(0, len(rows), INSERT_BATCH):
        await session.execute(insert(table), _as_uuids(table, rows[start : start + INSERT_BATCH]))


def _copy_value(value: Any) -> Any:
    # COPY bypasses SQLAlchemy's type processing: JSON goes in as text.
    return json.dumps(value) if isinstance(value, dict | list) else value


async def _delete(resources: Resources, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        with contextlib.suppress(StorageError):
            await resources.storage.delete_many(keys[start : start + 1000])


def _error_of(exc: ArchiveError | ImportDataError) -> dict[str, Any]:
    if isinstance(exc, ArchiveError):
        return {"file": exc.entry, "record_id": None, "message": exc.message}
    return {"file": exc.file, "record_id": exc.record_id, "message": exc.message}


async def _fail(resources: Resources, job_id: uuid.UUID, error: dict[str, Any]) -> None:
    async with resources.session_factory() as session, session.begin():
        await session.execute(
            update(ImportJob)
            .where(ImportJob.id == job_id, ImportJob.state != ImportState.SUCCESS)
            .values(state=ImportState.FAILURE, error=error, finished_at=utcnow())
        )


# --- reconciling with the queue ----------------------------------------------------


async def reconcile_imports(resources: Resources, *, stale_after: dt.timedelta) -> int:
    """Re-enqueue imports the queue lost (Redis flushed, worker killed); returns how many."""
    cutoff = utcnow() - stale_after
    async with resources.session_factory() as session:
        stale = (
            await session.scalars(
                select(ImportJob.id).where(
                    ImportJob.state.in_([ImportState.PENDING, ImportState.STARTED]),
                    ImportJob.heartbeat_at < cutoff,
                )
            )
        ).all()
    requeued = 0
    for job_id in stale:
        if await resources.jobs.is_queued_or_running(job_id):
            continue
        async with resources.session_factory() as session, session.begin():
            await session.execute(
                update(ImportJob).where(ImportJob.id == job_id).values(heartbeat_at=utcnow())
            )
        await resources.jobs.enqueue_import(job_id)
        requeued += 1
    if requeued:
        logger.info("re-enqueued %d lost imports", requeued)
    return requeued
