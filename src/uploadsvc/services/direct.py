"""Direct (fallback) uploads: the service receives the bytes itself (SPEC §4).

The body is never buffered whole. The first bytes are checked (magic bytes
against the declared type and the profile) before anything is stored; the
size is counted and the SHA-256 computed as the bytes stream to storage; a
limit crossed mid-body stops the upload at once. Storage's ``put_stream``
guarantees that an error raised anywhere in the stream leaves no object,
and the row is only written once the object is complete.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import content_types as ct
from uploadsvc import metrics, repository
from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import (
    BadRequest,
    PayloadTooLarge,
    StorageError,
    Unprocessable,
    UnsupportedMediaType,
)
from uploadsvc.models import Upload, UploadStatus
from uploadsvc.multipart import FormReader
from uploadsvc.profiles import Profile, Purpose, content_disposition, profile_for, sanitize_filename
from uploadsvc.schemas import ConfirmedFile
from uploadsvc.security import Principal
from uploadsvc.services.files import confirmed_body
from uploadsvc.storage import Storage

# Multipart framing around a file (boundaries, part headers, small fields):
# an honest Content-Length above limit + this is over the limit for sure.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Open Event clients may send several files at once.
MAX_FILES_PER_REQUEST = 20


@dataclass(frozen=True, slots=True)
class IncomingFile:
    filename: str
    # The type the client declared; None when the magic bytes decide.
    declared_type: str | None
    chunks: AsyncIterator[bytes]


def refuse_honest_oversize(content_length: str | None, limit: int) -> None:
    """413 before reading a byte when the client says the body is too big."""
    if content_length is None:
        return
    try:
        length = int(content_length)
    except ValueError:
        raise BadRequest("Content-Length is not a number.", code="bad_content_length") from None
    if length > limit:
        raise PayloadTooLarge(
            f"The body has {length} bytes; the limit is {limit}.", code="too_large"
        )


async def store_file(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    profile: Profile,
    incoming: IncomingFile,
) -> Upload:
    """Check, stream to storage and record one file; nothing is left behind on failure."""
    received = _Received(profile.max_bytes)
    chunks = incoming.chunks
    prefix = await received.read_prefix(chunks)
    if not prefix:
        raise Unprocessable("The file is empty.", code="empty_object")
    detected = await ct.detect_type(prefix)
    try:
        content_type = ct.decide_type(incoming.declared_type, detected, profile.allowed_types)
    except ct.TypeRefused as refused:
        error = UnsupportedMediaType if refused.code == "unsupported_type" else Unprocessable
        raise error(refused.detail, code=refused.code) from None

    now = utcnow()
    key = profile.object_key(user_id=principal.user_id, content_type=content_type, now=now)
    await storage.put_stream(key, content_type=content_type, chunks=received.stream(prefix, chunks))
    try:
        digest = await received.sha256()
        upload = await repository.add(
            session,
            Upload(
                id=uuid.uuid4(),
                owner_id=principal.user_id,
                purpose=profile.purpose.value,
                file_key=key,
                filename=sanitize_filename(incoming.filename or "upload"),
                content_type=content_type,
                size_bytes=received.size,
                sha256=base64.b64encode(digest).decode(),
                status=UploadStatus.CONFIRMED,
                created_at=now,
                url_expires_at=now,
                confirmed_at=now,
            ),
        )
    except BaseException:
        await storage.delete(key)
        raise
    metrics.UPLOADS_CONFIRMED.inc()
    return upload


class _Received:
    """Counts the bytes of one file, stops them at the limit, and hashes them off the loop.

    SHA-256 costs about as much CPU as receiving and parsing the body together,
    so it runs in a worker thread (hashlib releases the GIL while it hashes):
    the bytes are copied into one of two buffers; a full buffer is hashed in
    the thread while the loop fills the other. Each hand-off costs the loop a
    thread wake-up and its reply; buffers of a few MiB keep them rare.
    """

    # Measured on the multipart route (null sink): 1 MiB of chunks per hand-off
    # cost ~0.15 s of loop time per GiB more than 2-4 MiB; 2 MiB keeps the two
    # buffers (4 MiB) within the S3 path's memory bound next to its two parts.
    HASH_BUFFER_BYTES = 2 * 1024 * 1024

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._buffers: list[bytearray] = []  # allocated when needed, at most two
        self._current = 0
        self._filled = 0
        self._hashing: asyncio.Future[None] | None = None

    async def _take(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLarge(
                f"The file is over the {self.limit}-byte limit.", code="too_large"
            )
        view, offset = memoryview(chunk), 0
        while offset < len(view):
            if self._current == len(self._buffers):
                self._buffers.append(bytearray(self.HASH_BUFFER_BYTES))
            take = min(self.HASH_BUFFER_BYTES - self._filled, len(view) - offset)
            end = self._filled + take
            self._buffers[self._current][self._filled : end] = view[offset : offset + take]
            self._filled, offset = end, offset + take
            if self._filled == self.HASH_BUFFER_BYTES:
                await self._hash_current()
        return chunk

    async def _hash_current(self) -> None:
        full = memoryview(self._buffers[self._current])[: self._filled]
        # SHA-256 is a chain: one buffer at a time, in order. The previous one
        # must be done anyway before its buffer is filled again; waiting for it
        # also holds the client back when the thread falls behind.
        if self._hashing is not None:
            await self._hashing
        # A plain future, not a task: if the upload fails, the thread just
        # finishes its buffer (about a millisecond) and nothing waits for it.
        self._hashing = asyncio.get_running_loop().run_in_executor(None, self._sha256.update, full)
        self._current, self._filled = 1 - self._current, 0

    async def sha256(self) -> bytes:
        """The digest of every byte taken (call once, after the last chunk)."""
        if self._filled:
            await self._hash_current()
        if self._hashing is not None:
            await self._hashing
        return self._sha256.digest()

    async def read_prefix(self, chunks: AsyncIterator[bytes]) -> bytes:
        """Enough of the start of the file for the magic-byte check."""
        prefix = bytearray()
        async for chunk in chunks:
            prefix.extend(await self._take(chunk))
            if len(prefix) >= ct.MAGIC_PREFIX_BYTES:
                break
        return bytes(prefix)

    async def stream(self, prefix: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        yield prefix
        async for chunk in rest:
            yield await self._take(chunk)


async def _all_or_nothing(storage: Storage, work: AsyncIterator[Upload]) -> list[Upload]:
    """Run ``work``; if any step fails, delete every object it already stored.

    Their rows go with the request's rollback, so a refused third file leaves
    neither the first two objects nor their rows.
    """
    uploads: list[Upload] = []
    try:
        async for upload in work:
            uploads.append(upload)
    except BaseException:
        for upload in uploads:
            # If this fails too, cleanup removes the object: its row is rolled back.
            with contextlib.suppress(StorageError):
                await storage.delete(upload.file_key)
        raise
    return uploads


async def direct_upload_form(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    purpose: Purpose,
    form: FormReader,
) -> ConfirmedFile:
    """``POST /v1/uploads/direct``: the part ``file`` (a ``purpose`` field may precede it)."""

    async def each() -> AsyncIterator[Upload]:
        chosen = purpose
        stored = False
        # The rest of the body is still read after the file, so that a
        # malformed ending is refused (and the stored file removed) too.
        async for name, part_type, filename in _parts(form):
            if name == "purpose" and stored:
                # The file went to storage under the purpose known then; a
                # late purpose would be silently ignored, so it is refused.
                raise Unprocessable(
                    "The 'purpose' field must come before 'file' (or use ?purpose=).",
                    code="validation_error",
                )
            if name == "purpose":
                chosen = _purpose(await form.text())
            elif name == "file" and not stored:
                stored = True
                yield await store_file(
                    session,
                    storage,
                    settings,
                    principal=principal,
                    profile=profile_for(settings, chosen),
                    incoming=IncomingFile(filename or "upload", part_type, form.chunks()),
                )

    uploads = await _all_or_nothing(storage, each())
    if not uploads:
        raise Unprocessable("The form has no part named 'file'.", code="missing_file")
    return await confirmed_body(storage, settings, uploads[0])


async def _parts(form: FormReader) -> AsyncIterator[tuple[str, str | None, str | None]]:
    while (part := await form.next_part()) is not None:
        yield part.name, part.content_type, part.filename


def _purpose(text: str) -> Purpose:
    try:
        return Purpose(text.strip())
    except ValueError:
        raise Unprocessable(f"Unknown purpose {text!r}.", code="validation_error") from None


async def direct_upload_raw(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    purpose: Purpose,
    filename: str,
    content_type: str | None,
    body: AsyncIterator[bytes],
) -> ConfirmedFile:
    """``PUT /v1/uploads/direct``: the body is the file, its type in Content-Type."""
    upload = await store_file(
        session,
        storage,
        settings,
        principal=principal,
        profile=profile_for(settings, purpose),
        incoming=IncomingFile(filename, content_type, body),
    )
    return await confirmed_body(storage, settings, upload)


# --- Open Event compatible routes -------------------------------------------------


async def open_event_files(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    form: FormReader,
) -> tuple[list[str], bool]:
    """``POST /v1/upload/file``: every part named ``file``, ``files[]`` or ``files``.

    Returns the URLs, and whether the client used the several-files form
    (Open Event answers a list then, even for one file).
    """
    profile = profile_for(settings, Purpose.ATTACHMENT)
    several = False

    async def each() -> AsyncIterator[Upload]:
        nonlocal several
        count = 0
        async for name, _, filename in _parts(form):
            if name not in ("file", "files", "files[]"):
                continue
            several = several or name != "file"
            count += 1
            if count > MAX_FILES_PER_REQUEST:
                raise BadRequest(
                    f"At most {MAX_FILES_PER_REQUEST} files per request.", code="too_many_files"
                )
            # Open Event clients send whatever type their browser guessed: the bytes decide.
            incoming = IncomingFile(filename or "upload", None, form.chunks())
            yield await store_file(
                session, storage, settings, principal=principal, profile=profile, incoming=incoming
            )

    uploads = await _all_or_nothing(storage, each())
    if not uploads:
        raise Unprocessable("The form has no part named 'file' or 'files[]'.", code="missing_file")
    return [await _public_url(storage, settings, upload) for upload in uploads], several


async def read_limited(body: AsyncIterator[bytes], limit: int) -> bytes:
    """A small request body, read whole but refused (413) as soon as it passes ``limit``."""
    data = bytearray()
    async for chunk in body:
        data.extend(chunk)
        if len(data) > limit:
            raise PayloadTooLarge(f"The body is over the {limit}-byte limit.", code="too_large")
    return bytes(data)


_DATA_URI = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*);base64,")


async def open_event_image(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    data_uri: str,
) -> str:
    """``POST /v1/upload/image``: a base64 ``data:`` URI whose type must match its bytes."""
    match = _DATA_URI.match(data_uri)
    if match is None:
        raise Unprocessable("'data' must be a base64 data: URI.", code="invalid_data_uri")
    profile = Profile(Purpose.ATTACHMENT, ct.IMAGE_TYPES, settings.max_attachment_bytes)
    encoded = data_uri[match.end() :]
    # Bound the decoded size before decoding anything.
    if len(encoded) * 3 // 4 > profile.max_bytes + 2:
        raise PayloadTooLarge(
            f"The image is over the {profile.max_bytes}-byte limit.", code="too_large"
        )
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Unprocessable("The data URI is not valid base64.", code="invalid_data_uri") from None

    async def chunks() -> AsyncIterator[bytes]:
        yield decoded

    declared = match.group("type") or "application/octet-stream"
    upload = await store_file(
        session,
        storage,
        settings,
        principal=principal,
        profile=profile,
        incoming=IncomingFile("image", declared, chunks()),
    )
    return await _public_url(storage, settings, upload, disposition="inline")


async def _public_url(
    storage: Storage, settings: Settings, upload: Upload, *, disposition: str = "attachment"
) -> str:
    """A URL that works without auth until it expires (a presigned GET)."""
    return await storage.presign_get(
        upload.file_key,
        expires_in=settings.download_url_expires_seconds,
        content_type=upload.content_type,
        content_disposition=content_disposition(upload.filename, disposition=disposition),
    )
