"""Image variants: the large, thumbnail, small and icon copies of an image file.

Confirming an image (``schedule_variants``) records a pending row per variant
and defers a job until the confirming transaction commits. The job
(``make_variants``) copies the original to a temporary folder and has a child
process (``uploadsvc.imaging``) make the copies under a deadline; it stores
them under ``variants/{file_id}/``, outside the upload prefixes that cleanup
sweeps, and records them. A refused or undecodable image marks its variants
``failed`` with a reason; the original stays a confirmed file. See
docs/api.md, "Image variants".
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from anyio import to_thread
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from uploadsvc.config import Settings
from uploadsvc.content_types import STRIPPABLE_IMAGE_TYPES
from uploadsvc.errors import Conflict, NotFound, StorageError
from uploadsvc.imaging import MadeVariant
from uploadsvc.job_queue import enqueue_after_commit, retry_after
from uploadsvc.models.images import ImageVariant, VariantStatus
from uploadsvc.models.uploads import ScanState, Upload, UploadStatus
from uploadsvc.profiles import Purpose, content_disposition, default_variant_px, profile_for
from uploadsvc.repository import images as repository
from uploadsvc.resources import Resources
from uploadsvc.schemas.files import DownloadUrl
from uploadsvc.schemas.images import ImageVariantList, ImageVariantRead
from uploadsvc.services import scanning
from uploadsvc.storage import Storage
from uploadsvc.storage.base import GetGrant

logger = logging.getLogger(__name__)

VARIANT_PREFIX = "variants/"
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})

# Transient failures (storage unreachable) are tried this many times in all.
MAX_TRIES = 3
_CHUNK = 256 * 1024


def variant_sizes(settings: Settings, purpose: str | None = None) -> dict[str, int]:
    """Variant name → its long side in px, for a file of ``purpose`` (its profile's
    sizes) or an imported medium (None); a size of 0 turns the variant off."""
    sizes = (
        profile_for(settings, Purpose(purpose)).variant_px
        if purpose in set(Purpose)
        else default_variant_px(settings)
    )
    return {name: px for name, px in sizes.items() if px > 0}


async def schedule_variants(session: AsyncSession, settings: Settings, upload: Upload) -> None:
    """Called where a file becomes confirmed: an image gets pending variants and a job."""
    sizes = variant_sizes(settings, upload.purpose)
    if upload.content_type not in IMAGE_TYPES or not sizes:
        return
    await repository.add_pending(session, file_id=upload.id, names=list(sizes))
    enqueue_after_commit(session, "variants", upload.id)


def stage_variants(settings: Settings, upload: Upload, session: AsyncSession) -> None:
    """``schedule_variants`` for a file staged but not written yet (the streaming
    routes): no database I/O while the request may still be reading its body."""
    sizes = variant_sizes(settings, upload.purpose)
    if upload.content_type not in IMAGE_TYPES or not sizes:
        return
    repository.stage_pending(session, file_id=upload.id, names=list(sizes))
    enqueue_after_commit(session, "variants", upload.id)


def stage_media_variants(
    session: AsyncSession,
    settings: Settings,
    *,
    event_id: uuid.UUID,
    media: list[tuple[uuid.UUID, str]],
) -> None:
    """Pending variants for the image media an import stored (each its row's id and
    key), written by the import's own commit; ``enqueue_media_variants`` after it."""
    sizes = variant_sizes(settings)
    if media and sizes:
        repository.add_pending_media(session, event_id=event_id, media=media, names=list(sizes))


async def enqueue_media_variants(resources: Resources, media: list[tuple[uuid.UUID, str]]) -> None:
    """The variants job of each medium, once the import has committed. A failure
    is logged: the rows stay pending, as a file's do."""
    if not variant_sizes(resources.settings):
        return
    for medium_id, _key in media:
        try:
            await resources.jobs.enqueue_variants(medium_id)
        except Exception:
            logger.exception("could not enqueue the variants job of %s", medium_id)


async def list_variants(
    session: AsyncSession, storage: Storage, settings: Settings, *, upload: Upload
) -> ImageVariantList:
    """A file's variants; their URLs only once the file may be served (its scan)."""
    rows = await repository.list_for_file(session, file_id=upload.id)
    return ImageVariantList(
        file_id=upload.id, items=await _reads_of_file(storage, settings, upload, rows)
    )


async def _reads_of_file(
    storage: Storage, settings: Settings, upload: Upload, rows: list[ImageVariant]
) -> list[ImageVariantRead]:
    stem = _stem(upload) if scanning.is_servable(settings, upload) else None
    return [
        await _variant_read(storage, settings, row, stem=stem, signed=stem is not None)
        for row in rows
    ]


async def variants_of_read_file(
    engine: AsyncEngine, storage: Storage, settings: Settings, *, upload: Upload
) -> list[ImageVariantRead]:
    """The variants ``GET /v1/files/{id}`` lists for an image: one autocommit
    statement, as the file's own read (docs/architecture.md, "Reads and single
    writes"); URLs only once the file may be served."""
    rows = await repository.list_for_file_autocommit(engine, file_id=upload.id)
    return await _reads_of_file(storage, settings, upload, rows)


async def variant_download_url(
    engine: AsyncEngine, storage: Storage, settings: Settings, *, upload: Upload, name: str
) -> DownloadUrl:
    """``GET /v1/files/{id}/download?variant=``: the URL of one ready variant
    (one autocommit statement more than the file's own download)."""
    scanning.require_servable(settings, upload)
    listed = await repository.list_for_file_autocommit(engine, file_id=upload.id)
    rows = {row.name: row for row in listed}
    row = rows.get(name)
    if row is None:
        raise NotFound(f"This file has no {name!r} variant.", code="variant_not_found")
    if row.status is VariantStatus.PENDING:
        error = Conflict("The variant is being made; ask again shortly.", code="variant_pending")
        error.headers["Retry-After"] = "2"
        raise error
    if row.status is VariantStatus.FAILED:
        raise Conflict(
            f"The variant could not be made: {row.failure_reason}", code="variant_failed"
        )
    read = await _variant_read(storage, settings, row, stem=_stem(upload))
    if read.download_url is None or read.expires_in is None:  # a ready row has its key
        raise NotFound(f"This file has no {name!r} variant.", code="variant_not_found")
    return DownloadUrl(download_url=read.download_url, expires_in=read.expires_in)


def _stem(upload: Upload) -> str:
    return upload.filename.rsplit(".", 1)[0] or "image"


async def media_variants(
    session: AsyncSession, resources: Resources, *, event_id: uuid.UUID
) -> dict[str, list[ImageVariantRead]]:
    """The variants of an event's image media, by the medium's key."""
    by_key: dict[str, list[ImageVariantRead]] = {}
    for row in await repository.list_for_event(session, event_id=event_id):
        if row.source_key is not None:
            read = await _variant_read(resources.storage, resources.settings, row, stem=None)
            by_key.setdefault(row.source_key, []).append(read)
    return by_key


async def _variant_read(
    storage: Storage,
    settings: Settings,
    row: ImageVariant,
    *,
    stem: str | None,
    signed: bool = True,
) -> ImageVariantRead:
    """A variant's body; a ready one's URL downloads it as ``{stem}-{name}.{ext}``
    (shown inline, as the stored type says, without a stem)."""
    # The row's columns of the same names; the download URL is added below.
    read = ImageVariantRead.model_validate(row, from_attributes=True)
    if signed and row.status is VariantStatus.READY and row.object_key and row.content_type:
        expires_in = settings.download_url_expires_seconds
        disposition = None
        if stem is not None:
            filename = f"{stem}-{row.name}.{row.object_key.rsplit('.', 1)[-1]}"
            disposition = content_disposition(filename, content_type=row.content_type)
        read.download_url = await storage.presign_get(
            GetGrant(
                row.object_key,
                expires_in=expires_in,
                content_type=row.content_type,
                content_disposition=disposition,
            )
        )
        read.expires_in = expires_in
    return read


async def remove_variants(session: AsyncSession, storage: Storage, *, file_id: uuid.UUID) -> None:
    """Delete a file's variant objects (all under its prefix, recorded or not) and rows."""
    keys: list[str] = []
    async for page in storage.list_pages(f"{VARIANT_PREFIX}{file_id}/"):
        keys.extend(listed.key for listed in page)
    for start in range(0, len(keys), 1000):
        await storage.delete_many(keys[start : start + 1000])
    await repository.delete_for_file(session, file_id=file_id)


async def make_variants(resources: Resources, file_id: uuid.UUID, *, job_try: int) -> None:
    """The variants job of one file, or of one imported medium (``file_id`` is then
    the id of the medium's row); idempotent (only pending variants are made).

    A transient failure (storage unreachable) asks for another try, up to
    ``MAX_TRIES``; then the variants are marked failed.
    """
    try:
        await _make_variants(resources, file_id)
    except StorageError as exc:
        if job_try < MAX_TRIES:
            raise retry_after(job_try) from exc
        async with resources.session_factory() as session:
            await repository.mark_failed(session, owner_id=file_id, reason="storage_unavailable")
            await session.commit()


async def _make_variants(resources: Resources, owner_id: uuid.UUID) -> None:
    async with resources.session_factory() as session:
        upload = await repository.get_file(session, file_id=owner_id)
        if upload is not None:
            if upload.status is not UploadStatus.CONFIRMED:
                return
            rows = await repository.list_for_file(session, file_id=owner_id)
            source_key, prefix = upload.file_key, f"{VARIANT_PREFIX}{owner_id}/"
            strip = _strippable(resources.settings, upload)
            purpose: str | None = upload.purpose
        else:
            # An imported medium: its variants sit under its own key's path.
            rows = await repository.list_for_medium(session, medium_id=owner_id)
            if not rows or rows[0].source_key is None:
                return
            source_key = rows[0].source_key
            prefix = f"{VARIANT_PREFIX}{source_key}/"
            strip, purpose = False, None
    pending = {row.name for row in rows if row.status is VariantStatus.PENDING}
    sizes = {
        name: px
        for name, px in variant_sizes(resources.settings, purpose).items()
        if name in pending
    }
    if not await _make_and_record(resources, owner_id, source_key, prefix, sizes, strip=strip):
        return
    if upload is not None:
        async with resources.session_factory() as session:
            upload = await repository.get_file(session, file_id=owner_id)
            if upload is None or upload.status is not UploadStatus.CONFIRMED:
                # Deleted while the job ran: its delete found no variants yet.
                await remove_variants(session, resources.storage, file_id=owner_id)
                await session.commit()
                return
        if not strip and _strippable(resources.settings, upload):
            # Its scan ended while this job ran, and could not enqueue it again.
            await _make_and_record(resources, owner_id, upload.file_key, prefix, {}, strip=True)


def _strippable(settings: Settings, upload: Upload) -> bool:
    """Whether the job rewrites this original without its metadata: a file that a
    scan is not reading (pending) and did not find infected. A file confirmed
    while its scan was pending is stripped when the scan enqueues the job again,
    or at the end of the job if the scan ended while it ran."""
    return (
        settings.strip_image_metadata
        and upload.content_type in STRIPPABLE_IMAGE_TYPES
        and upload.scan_state not in (ScanState.PENDING, ScanState.INFECTED)
    )


async def _make_and_record(
    resources: Resources,
    owner_id: uuid.UUID,
    source_key: str,
    prefix: str,
    sizes: dict[str, int],
    *,
    strip: bool,
) -> bool:
    """Make the variants of the object ``source_key`` (name → px), store them under
    ``prefix`` and record the outcome on the owner's rows; with ``strip``, also
    rewrite the original without its metadata. False if there was nothing to do."""
    settings, storage = resources.settings, resources.storage
    if not sizes and not strip:
        return False
    workdir = Path(await to_thread.run_sync(tempfile.mkdtemp, None, "uploadsvc-variants-"))
    try:
        source = workdir / "source"
        await storage.download_to(source_key, source)
        stripped = workdir / "stripped" if strip else None
        outcome = await _render(
            settings, source=source, outdir=workdir, sizes=sizes, strip_to=stripped
        )
        if isinstance(outcome, str):
            logger.info("image variants of %s failed: %s", owner_id, outcome)
            async with resources.session_factory() as session:
                await repository.mark_failed(session, owner_id=owner_id, reason=outcome)
                await session.commit()
            return True
        made_variants, was_stripped = outcome
        stored: list[tuple[str, MadeVariant]] = []
        for made in made_variants:
            key = f"{prefix}{made.name}{Path(made.path).suffix}"
            chunks = _file_chunks(Path(made.path))
            await storage.put_stream(key, content_type=made.content_type, chunks=chunks)
            stored.append((key, made))
        if stripped is not None and was_stripped:
            await _replace_original(resources, owner_id, source_key, stripped, prefix)
    finally:
        await to_thread.run_sync(shutil.rmtree, workdir, True)

    async with resources.session_factory() as session:
        for key, made in stored:
            await repository.mark_ready(
                session,
                owner_id=owner_id,
                name=made.name,
                object_key=key,
                content_type=made.content_type,
                width=made.width,
                height=made.height,
                size_bytes=made.size_bytes,
            )
        await session.commit()
    return True


async def _replace_original(
    resources: Resources, file_id: uuid.UUID, file_key: str, stripped: Path, prefix: str
) -> None:
    """Put the stripped copy in place of the original and record its size and SHA-256.

    Staged under the variants prefix, then moved over the original (a rename
    on disk, a copy on S3: a reader gets the old bytes or the new, whole). If
    the file stopped being a servable file meanwhile (deleted, found
    infected), the object just written at its old key is deleted again.
    """
    storage = resources.storage
    staging = f"{prefix}original.stripped"
    info = await storage.head(file_key)
    content_type = (info.content_type if info else None) or "application/octet-stream"
    await storage.put_stream(staging, content_type=content_type, chunks=_file_chunks(stripped))
    await storage.move(staging, file_key)
    digest = await to_thread.run_sync(_sha256_of, stripped)
    size = (await to_thread.run_sync(stripped.stat)).st_size
    async with resources.session_factory() as session:
        won = await repository.record_stripped(
            session, file_id=file_id, size_bytes=size, sha256=base64.b64encode(digest).decode()
        )
        await session.commit()
    if not won:
        await storage.delete(file_key)


def _sha256_of(path: Path) -> bytes:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").digest()


async def _render(
    settings: Settings,
    *,
    source: Path,
    outdir: Path,
    sizes: dict[str, int],
    strip_to: Path | None = None,
) -> tuple[list[MadeVariant], bool] | str:
    """Run ``uploadsvc.imaging`` in a child process; kill it past the deadline.

    A child process, not a thread: a thread cannot be stopped, and a decoder
    that runs away with memory takes only the child with it. Returns the
    variants made and whether ``strip_to`` was written, or why no variant was
    made (the reason recorded on them).
    """
    request = json.dumps(
        {
            "source": str(source),
            "outdir": str(outdir),
            "sizes": sizes,
            "format": settings.image_variant_format,
            "max_pixels": settings.image_max_pixels,
            "max_memory_mib": settings.image_max_memory_mib,
            "strip_to": str(strip_to) if strip_to else None,
        }
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uploadsvc.imaging",
        request,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(
            child.communicate(), timeout=settings.image_job_timeout_seconds
        )
    except TimeoutError:
        child.kill()
        await child.wait()
        return f"timeout: no variants after {settings.image_job_timeout_seconds} s"
    except BaseException:
        child.kill()
        await child.wait()
        raise
    if child.returncode != 0:
        last = stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return f"failed: exit {child.returncode}: {last[0][:150]}"
    result = json.loads(stdout.decode().strip().splitlines()[-1])
    if "made" not in result:
        return f"{result['refused']}: {result['detail']}"
    return [MadeVariant(**made) for made in result["made"]], bool(result.get("stripped"))


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await to_thread.run_sync(path.open, "rb")
    try:
        while chunk := await to_thread.run_sync(handle.read, _CHUNK):
            yield chunk
    finally:
        await to_thread.run_sync(handle.close)
