"""Receiving a file's bytes through the service, shared by every route that does.

The body is never buffered whole. The first bytes are checked (magic bytes
against the declared type and the profile) before anything is stored; the
size is counted and the SHA-256 computed as the bytes stream to storage; a
limit crossed mid-body stops the upload at once. Storage's ``put_stream``
guarantees that an error raised anywhere in the stream leaves no object.

No transaction is open while the service waits on the client or on
storage: ``store_file`` only stages each row in the session (no I/O, so
SQLAlchemy begins nothing and takes no pooled connection), and once the
whole body is read ``record_all_or_nothing`` writes every staged row in one
short transaction (docs/architecture.md, "Sessions and transactions").
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import content_types as ct
from uploadsvc import metrics
from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import (
    PayloadTooLarge,
    StorageError,
    Unprocessable,
    UnsupportedMediaType,
)
from uploadsvc.formdata import FormReader
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.profiles import Profile, sanitize_filename
from uploadsvc.security import Principal
from uploadsvc.services import images, quotas, scanning, webhooks
from uploadsvc.storage import Storage


@dataclass(frozen=True, slots=True)
class IncomingFile:
    filename: str
    # The type the client declared; None when the magic bytes decide.
    declared_type: str | None
    chunks: AsyncIterator[bytes]


async def store_file(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    profile: Profile,
    incoming: IncomingFile,
) -> Upload:
    """Check and stream one file to storage, and stage its row in ``session``.

    Nothing is written to the database here: the caller reads the rest of
    the body, then calls ``record_all_or_nothing``. If this raises, no object
    is left behind.
    """
    received = _Received(
        profile.max_bytes, room=await quotas.room_for(session, settings, principal)
    )
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
    except BaseException:
        await storage.delete(key)
        raise
    upload = Upload(
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
    )
    # Only staged: add() does no I/O, the commit in record_all_or_nothing writes it.
    session.add(upload)
    scanning.hold_for_scan(settings, upload, session)
    images.stage_variants(settings, upload, session)
    quotas.stage(settings, upload, session)
    webhooks.emit(session, settings, "file.confirmed", webhooks.file_data(upload))
    return upload


async def record_all_or_nothing(
    session: AsyncSession, storage: Storage, uploads: Sequence[Upload]
) -> None:
    """Write the staged rows of ``uploads`` and commit, in one short transaction.

    Called once the body is read whole. If the rows cannot be written, their
    objects are deleted: a client never gets a row without its object, and
    no object stays behind without its row.
    """
    try:
        await quotas.reserve_staged(session)
        await session.commit()
    except BaseException:
        await _discard(session, storage, uploads)
        raise
    for upload in uploads:
        size = upload.size_bytes or 0  # always set here: the bytes were counted
        metrics.direct_upload_received(purpose=upload.purpose, size_bytes=size)
        metrics.upload_confirmed(purpose=upload.purpose, size_bytes=size)


async def _discard(session: AsyncSession, storage: Storage, uploads: Sequence[Upload]) -> None:
    for upload in uploads:
        if upload in session:
            session.expunge(upload)
        # If this fails too, cleanup removes the object: it has no row.
        with contextlib.suppress(StorageError):
            await storage.delete(upload.file_key)


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

    def __init__(self, limit: int, *, room: quotas.Room | None = None) -> None:
        self.limit = limit
        # The caller's quota, when it leaves less than the limit: past it the
        # body stops at once (the commit's check stays the one that decides).
        self.room = room
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._buffers: list[bytearray] = []  # allocated when needed, at most two
        self._current = 0
        self._filled = 0
        self._hashing: asyncio.Future[None] | None = None

    async def _take(self, chunk: bytes) -> bytes:
        self.size += len(chunk)
        if self.room is not None and self.size > self.room.left:
            raise self.room.refusal(self.size)
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


async def store_all_or_nothing(
    session: AsyncSession, storage: Storage, work: AsyncIterator[Upload]
) -> list[Upload]:
    """Run ``work`` (each step a ``store_file``), then record every row at once.

    If any step fails, the objects already stored are deleted and their
    staged rows dropped, so a refused third file leaves neither the first
    two objects nor their rows.
    """
    uploads: list[Upload] = []
    try:
        async for upload in work:
            uploads.append(upload)
    except BaseException:
        await _discard(session, storage, uploads)
        raise
    if uploads:
        await record_all_or_nothing(session, storage, uploads)
    return uploads


async def form_parts(form: FormReader) -> AsyncIterator[tuple[str, str | None, str | None]]:
    while (part := await form.next_part()) is not None:
        yield part.name, part.content_type, part.filename
