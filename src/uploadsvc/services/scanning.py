"""Malware scanning: no file is served before ClamAV's daemon has scanned it.

The rules are in docs/api.md, "Malware scanning". With ``scan_backend=clamd``:

- every service that makes a file confirmed calls ``hold_for_scan`` in the
  same transaction: the row is ``scan_state=pending`` from the moment it is a
  file, and its id waits in the session until the commit;
- the request scope (``deps.get_session``) enqueues the scan job after
  the commit (``job_queue.flush_after_commit``); the job (arq, or this process) is ``run_scan``: it
  streams the object from storage to clamd (INSTREAM) and records
  ``clean``, ``infected`` (with the signature) or ``unscanned_too_large``;
- clamd down, slow, or storage failing: the job asks for another try
  (``ScanInterrupted``), and once its tries are used up the file stays
  pending, so ``reconcile_scans`` (every minute) enqueues it again. Nothing
  turns a pending file into a served one except a clean verdict;
- ``require_servable`` is the gate of every download URL: 409
  ``scan_pending`` while pending, 423 ``infected`` / ``unscanned_too_large``.

Files confirmed while scanning was off have no scan state and are served.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import AsyncIterator
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.config import Settings
from uploadsvc.content_types import STRIPPABLE_IMAGE_TYPES
from uploadsvc.db import utcnow
from uploadsvc.errors import (
    Conflict,
    Forbidden,
    NotFound,
    ServiceUnavailable,
    StorageError,
    UploadsvcError,
)
from uploadsvc.job_queue import enqueue_after_commit, flush_after_commit
from uploadsvc.models.uploads import ScanState, Upload
from uploadsvc.repository import uploads as repository
from uploadsvc.resources import Resources
from uploadsvc.scanner import ClamdClient, ScannerUnavailable, StreamTooLong, Verdict
from uploadsvc.security import Principal
from uploadsvc.services import webhooks
from uploadsvc.storage import Storage

logger = logging.getLogger(__name__)

# Where an infected object goes when it is quarantined: outside every upload
# prefix, so neither cleanup's listing nor a download URL reaches it.
QUARANTINE_PREFIX = "quarantine/"
# Seconds a client is told to wait before asking again for a pending file.
PENDING_RETRY_AFTER_SECONDS = 5
# A file pending this long has missed its job (Redis lost it, its tries ran out).
RECONCILE_AFTER = dt.timedelta(seconds=30)
RECONCILE_BATCH = 500


class FileLocked(UploadsvcError):
    """The file exists but is withheld: the scanner found malware, or could not scan it."""

    status: ClassVar[int] = 423
    title: ClassVar[str] = "Locked"
    default_code: ClassVar[str] = "infected"


class ScanInterrupted(Exception):
    """clamd or storage failed during a scan; nothing was recorded: scan again later."""


def is_on(settings: Settings) -> bool:
    return settings.scan_backend == "clamd"


# --- holding new files back -------------------------------------------------------


def hold_for_scan(settings: Settings, upload: Upload, session: AsyncSession) -> None:
    """Mark a just-confirmed file as waiting for its scan (no-op when scanning is off).

    Called in the transaction that confirms the file, so no reader ever sees
    it confirmed and not pending; the scan job is enqueued after the commit.
    No database I/O: the state goes with the row's next write (the commit),
    so a route still reading its body holds no transaction
    (docs/architecture.md, "Sessions and transactions").
    """
    if not is_on(settings):
        return
    upload.scan_state = ScanState.PENDING
    enqueue_after_commit(session, "scan", upload.id)


# --- serving ----------------------------------------------------------------------


def is_servable(settings: Settings, upload: Upload) -> bool:
    return is_servable_state(settings, upload.scan_state)


def is_servable_state(settings: Settings, state: ScanState | None) -> bool:
    """Whether a file in this scan state may be handed out (null: scanned by nobody, as
    files confirmed while scanning was off)."""
    if state is None or state is ScanState.CLEAN:
        return True
    return state is ScanState.UNSCANNED_TOO_LARGE and settings.scan_serve_too_large


def require_servable(settings: Settings, upload: Upload) -> None:
    """Refuse a download URL for a file that is not known to be clean."""
    if is_servable(settings, upload):
        return
    if upload.scan_state is ScanState.PENDING:
        error = Conflict(
            "The file is being scanned for malware; ask again in a few seconds.",
            code="scan_pending",
        )
        error.headers["Retry-After"] = str(PENDING_RETRY_AFTER_SECONDS)
        raise error
    if upload.scan_state is ScanState.INFECTED:
        raise FileLocked("The malware scanner found a threat in this file.", code="infected")
    raise FileLocked(
        "The file is larger than the malware scanner accepts and was not scanned.",
        code="unscanned_too_large",
    )


async def scan_before_serving(
    session: AsyncSession, storage: Storage, settings: Settings, upload: Upload
) -> Upload:
    """Scan a file now, for routes that answer with a URL at once (the Open Event ones).

    Clean: the row says so and the URL can be issued. Otherwise the file is
    refused (423, or 503 while clamd is down) and its object deleted; the
    request's rollback removes its row.
    """
    if not is_on(settings) or upload.scan_state is not ScanState.PENDING:
        return upload
    try:
        state, signature = await _scan(storage, settings, upload)
    except ScanInterrupted:
        await _delete_quietly(storage, upload.file_key)
        error = ServiceUnavailable(
            "The malware scanner is not available; try again later.", code="scanner_unavailable"
        )
        error.headers["Retry-After"] = "30"
        raise error from None
    # Written with the row at the commit; no flush here, as the request may
    # still be reading its next file.
    upload.scan_state = state
    upload.scan_signature = signature
    upload.scanned_at = utcnow()
    if not is_servable(settings, upload):
        await _delete_quietly(storage, upload.file_key)
        require_servable(settings, upload)
    return upload


# --- the job ---------------------------------------------------------------------------


async def run_scan(resources: Resources, upload_id: uuid.UUID) -> ScanState | None:
    """Scan one file and record the outcome; None when there was nothing to do.

    Raises ``ScanInterrupted`` (transient: clamd or storage) without recording
    anything. Safe to run twice: the outcome is recorded only while pending.
    """
    settings = resources.settings
    async with resources.session_factory() as session:
        upload = await repository.get_confirmed(session, upload_id=upload_id)
    if upload is None or upload.scan_state is not ScanState.PENDING:
        return None
    if not is_on(settings):
        # Scanning was switched off with files still waiting: they wait for
        # it to be switched on again rather than being served unscanned.
        logger.warning("scan of %s skipped: scanning is off", upload_id)
        return None
    state, signature = await _scan(resources.storage, settings, upload)
    values: dict[str, object] = {"scan_signature": signature, "scanned_at": utcnow()}
    quarantine_key = None
    if state is ScanState.INFECTED and settings.scan_infected_action == "quarantine":
        quarantine_key = QUARANTINE_PREFIX + upload.file_key
        values["file_key"] = quarantine_key
    async with resources.session_factory() as session, session.begin():
        won = await repository.set_scan_result(
            session, upload_id=upload_id, scan_state=state, **values
        )
        if won and state is ScanState.INFECTED:
            data = {**webhooks.file_data(upload), "signature": signature}
            webhooks.emit(session, settings, "file.infected", data)
    await flush_after_commit(session, resources.jobs)
    if not won:
        return None
    logger.info("scanned %s: %s%s", upload_id, state.value, f" ({signature})" if signature else "")
    if state is ScanState.INFECTED:
        # After the commit: the row already withholds the file, whatever happens here.
        await _remove_infected(resources.storage, upload.file_key, quarantine_key)
    elif settings.strip_image_metadata and upload.content_type in STRIPPABLE_IMAGE_TYPES:
        # The variants job left the original alone while this scan read it.
        try:
            await resources.jobs.enqueue_variants(upload_id)
        except Exception:
            logger.exception("could not enqueue the variants job of %s", upload_id)
    return state


async def _scan(
    storage: Storage, settings: Settings, upload: Upload
) -> tuple[ScanState, str | None]:
    """The state a scan of ``upload``'s object leads to, and the signature found."""
    assert upload.size_bytes is not None, "confirm records the size of every file"
    if upload.size_bytes > settings.clamd_stream_max_bytes:
        return ScanState.UNSCANNED_TOO_LARGE, None
    client = ClamdClient.from_settings(settings)
    try:
        async with contextlib.aclosing(storage.read_chunks(upload.file_key)) as chunks:
            verdict: Verdict = await client.scan(chunks)
    except StreamTooLong:
        # clamd's StreamMaxLength is below clamd_stream_max_bytes: the rule is
        # clamd's own limit, whichever is lower.
        return ScanState.UNSCANNED_TOO_LARGE, None
    except (ScannerUnavailable, StorageError, NotFound) as exc:
        # NotFound too: an object that is missing while its row is confirmed
        # is a storage fault; the file stays pending rather than clean.
        logger.warning("scan of %s interrupted: %s", upload.id, exc)
        raise ScanInterrupted(str(exc)) from exc
    if verdict.infected:
        return ScanState.INFECTED, verdict.signature
    return ScanState.CLEAN, None


async def _remove_infected(storage: Storage, key: str, quarantine_key: str | None) -> None:
    try:
        if quarantine_key is None:
            await storage.delete(key)
        else:
            await storage.move(key, quarantine_key)
    except (StorageError, NotFound):
        # The row withholds the file already; an object left at its old key
        # has no confirmed row, so cleanup removes it after its cutoff.
        logger.warning("could not remove the infected object %s; cleanup will", key)


async def _delete_quietly(storage: Storage, key: str) -> None:
    with contextlib.suppress(StorageError):
        await storage.delete(key)


async def reconcile_scans(resources: Resources) -> int:
    """Enqueue the scans of files pending for longer than a job should take."""
    if not is_on(resources.settings):
        return 0
    async with resources.session_factory() as session:
        ids = await repository.pending_scans(
            session, confirmed_before=utcnow() - RECONCILE_AFTER, limit=RECONCILE_BATCH
        )
    for upload_id in ids:
        await resources.jobs.enqueue_scan(upload_id)
    if ids:
        logger.info("re-enqueued %d pending scans", len(ids))
    return len(ids)


# --- event imports -----------------------------------------------------------------


class ArchiveInfected(Exception):
    """The archive of an import holds malware: the import fails, it is not retried."""


async def check_import_archive(resources: Resources, key: str) -> None:
    """Before an import reads its archive: wait for the archive's own scan.

    Pending raises ``ScanInterrupted`` (the import is tried again after its
    backoff); infected raises ``ArchiveInfected``. An archive too large to be
    scanned whole is imported, its media scanned one by one (``scan_media``).
    """
    if not is_on(resources.settings):
        return
    async with resources.session_factory() as session:
        upload = await repository.scan_of_key(session, file_keys=[key, QUARANTINE_PREFIX + key])
    if upload is None:
        return  # not a file of uploads (cannot happen through the API): the download decides
    if upload.scan_state is ScanState.PENDING:
        raise ScanInterrupted("the archive has not been scanned yet")
    if upload.scan_state is ScanState.INFECTED:
        raise ArchiveInfected(f"The archive holds malware ({upload.scan_signature}).")


async def scan_media(settings: Settings, data: bytes) -> str | None:
    """Why an imported medium must not be stored (malware, or too large to scan); None if fine.

    Raises ``ScanInterrupted`` while clamd is down (the import is retried).
    """
    if not is_on(settings):
        return None
    if len(data) > settings.clamd_stream_max_bytes:
        return "is too large to be scanned for malware"

    async def once() -> AsyncIterator[bytes]:
        yield data

    try:
        verdict = await ClamdClient.from_settings(settings).scan(once())
    except StreamTooLong:
        return "is too large to be scanned for malware"
    except ScannerUnavailable as exc:
        raise ScanInterrupted(str(exc)) from exc
    if verdict.infected:
        return f"holds malware ({verdict.signature})"
    return None


# --- admins ---------------------------------------------------------------------


async def list_infected(session: AsyncSession, *, principal: Principal, limit: int) -> list[Upload]:
    """Every user's infected files, for admins only."""
    if not principal.is_admin:
        raise Forbidden("Only admins can list infected files.", code="admin_only")
    return await repository.list_infected(session, limit=limit)
