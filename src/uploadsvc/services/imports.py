"""Open Event imports: accept an archive, run the job, report its task (SPEC §4, §5).

``submit_*`` record an import job and enqueue it after the commit.
``run_import`` is the job itself (arq worker, or this process without
Redis): it copies the archive to a temporary file, checks and parses it off
the event loop, stores the media it holds, and writes every row in one
transaction with bulk inserts. All or nothing: on failure no event row
remains and the media objects it stored are deleted; the job records an
error naming the file and record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from anyio import to_thread
from sqlalchemy import Table, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import content_types as ct
from uploadsvc.archive import ArchiveError, ArchiveLimits, OpenEventArchive
from uploadsvc.db import utcnow
from uploadsvc.errors import NotFound, StorageError, Unprocessable
from uploadsvc.event_models import (
    CustomForm,
    Event,
    ImportJob,
    ImportState,
    Microlocation,
    Session,
    SessionType,
    SocialLink,
    Speaker,
    Sponsor,
    Track,
    session_speakers,
)
from uploadsvc.models import UploadStatus
from uploadsvc.multipart import FormReader
from uploadsvc.openevent import MEDIA_TYPES, ImportDataError, ImportPlan, build_plan
from uploadsvc.profiles import Purpose, profile_for
from uploadsvc.resources import Resources
from uploadsvc.security import Principal
from uploadsvc.services.direct import IncomingFile, store_file
from uploadsvc.services.uploads import find_upload

logger = logging.getLogger(__name__)

# Give up (FAILURE) after this many starts; arq retries transient errors until then.
MAX_ATTEMPTS = 5
# Rows per INSERT statement.
INSERT_BATCH = 1000


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
        event_id = uuid.uuid4()
        limits = ArchiveLimits(max_compressed_bytes=resources.settings.max_event_import_bytes)
        archive, plan = await to_thread.run_sync(
            _read, archive_path, limits, event_id, job.owner_id
        )
        try:
            await _store_media(resources, archive, plan, stored, progress)
        finally:
            await to_thread.run_sync(archive.close)
        await _write(resources, job, plan, progress)
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


def _read(
    path: Path, limits: ArchiveLimits, event_id: uuid.UUID, owner_id: str
) -> tuple[OpenEventArchive, ImportPlan]:
    """Blocking: check the archive and map its JSON (runs in a worker thread)."""
    archive = OpenEventArchive.open(path, limits)
    try:
        plan = build_plan(archive.json, event_id=event_id, owner_id=owner_id)
    except BaseException:
        archive.close()
        raise
    return archive, plan


async def _store_media(
    resources: Resources,
    archive: OpenEventArchive,
    plan: ImportPlan,
    stored: list[str],
    progress: _Progress,
) -> None:
    rows = {
        row["id"]: row for row in _chain([plan.event], plan.speakers, plan.sponsors, plan.sessions)
    }
    total = len(plan.media)
    for done, ref in enumerate(plan.media, start=1):
        if done == 1 or done % 20 == 0 or done == total:
            await progress("media", done, total, f"Storing media ({done}/{total})")
        data = await to_thread.run_sync(archive.media, ref.path)
        if data is None:
            plan.warnings.append(f"{ref.label}: {ref.path} is not in the archive; left empty")
            continue
        detected = await ct.detect_type(data)
        try:
            content_type = ct.decide_type(None, detected, MEDIA_TYPES[ref.kind])
        except ct.TypeRefused:
            plan.warnings.append(f"{ref.label}: {ref.path} is {detected}, not {ref.kind}; skipped")
            continue
        await resources.storage.put_stream(ref.key, content_type=content_type, chunks=_once(data))
        stored.append(ref.key)
        rows[ref.row_id][ref.column] = ref.key


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


def _chain(*groups: Iterable[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for group in groups:
        yield from group


async def _write(
    resources: Resources, job: ImportJob, plan: ImportPlan, progress: _Progress
) -> None:
    counts = plan.counts()
    await progress(
        "sessions",
        counts["sessions"],
        counts["sessions"],
        f"Importing sessions ({counts['sessions']}/{counts['sessions']})",
    )
    event_id = plan.event["id"]
    async with resources.session_factory() as session, session.begin():
        await session.execute(insert(Event).values(plan.event | {"import_job_id": job.id}))
        for table, rows in (
            (Track.__table__, plan.tracks),
            (Microlocation.__table__, plan.microlocations),
            (SessionType.__table__, plan.session_types),
            (Speaker.__table__, plan.speakers),
            (Session.__table__, plan.sessions),
            (session_speakers, plan.session_speakers),
            (Sponsor.__table__, plan.sponsors),
            (SocialLink.__table__, plan.social_links),
            (CustomForm.__table__, plan.forms),
        ):
            await _bulk_insert(session, table, rows)  # type: ignore[arg-type]
        await session.execute(
            update(ImportJob)
            .where(ImportJob.id == job.id)
            .values(
                state=ImportState.SUCCESS,
                result={
                    "id": str(event_id),
                    "event_name": plan.event["name"],
                    "url": f"/v1/events/{event_id}",
                    "counts": counts,
                    "warnings": plan.warnings,
                },
                progress={"stage": "done", "done": 1, "total": 1, "message": "Imported"},
                finished_at=utcnow(),
                heartbeat_at=utcnow(),
            )
        )


async def _bulk_insert(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        # COPY is PostgreSQL's bulk path: an order of magnitude faster than
        # multi-row INSERTs, and inside the same transaction.
        raw = await connection.get_raw_connection()
        columns = [column.name for column in table.columns]
        records = [tuple(_copy_value(row.get(name)) for name in columns) for row in rows]
        await raw.driver_connection.copy_records_to_table(  # type: ignore[union-attr]
            table.name, records=records, columns=columns
        )
        return
    for start in range(0, len(rows), INSERT_BATCH):
        await session.execute(insert(table), rows[start : start + INSERT_BATCH])


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
