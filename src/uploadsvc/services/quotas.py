"""Per-user storage quotas (docs/api.md, "Quotas").

With ``UPLOADSVC_USER_QUOTA_BYTES`` set, every route that makes room for new
bytes (request-url, multipart and Uppy starts, direct and Open Event
uploads, archive imports) checks the caller's usage (confirmed files plus
pending uploads' declared sizes) and the new bytes against it, in the same
locked transaction that records them (repository/quotas.py), so two
concurrent requests cannot both take the last bytes. Past it: 413
``quota_exceeded`` with the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from uploadsvc import metrics
from uploadsvc.config import Settings
from uploadsvc.errors import QuotaExceeded
from uploadsvc.models.uploads import Upload
from uploadsvc.repository import quotas as repository
from uploadsvc.repository import uploads as uploads_repository
from uploadsvc.repository.quotas import StoredBytes
from uploadsvc.schemas.usage import Usage
from uploadsvc.security import Principal


def _fits(stored: StoredBytes, *, requested: int | None, quota: int) -> bool:
    if requested is None:
        # An upload whose size is not declared (Uppy) needs some room left;
        # confirm checks its bytes (refuse_undeclared).
        return stored.used_bytes < quota
    return stored.used_bytes + requested <= quota


def _refusal(stored: StoredBytes, *, requested: int | None, quota: int) -> QuotaExceeded:
    metrics.quota_refused()
    return QuotaExceeded(
        f"This upload needs {requested or 0} bytes; {stored.used_bytes} of your "
        f"{quota}-byte quota are used. Delete files or abort pending uploads first.",
        used_bytes=stored.used_bytes,
        requested_bytes=requested or 0,
        quota_bytes=quota,
    )


async def insert_pending(engine: AsyncEngine, settings: Settings, upload: Upload) -> Upload:
    """``repository.insert_pending``, refused with 413 when the quota has no room for it."""
    quota = settings.user_quota_bytes
    if quota is None:
        return await uploads_repository.insert_pending(engine, upload)
    requested = upload.size_bytes
    refused = await repository.insert_pending_if(
        engine, upload, fits=lambda stored: _fits(stored, requested=requested, quota=quota)
    )
    if refused is not None:
        raise _refusal(refused, requested=requested, quota=quota)
    return upload


async def add_pending(session: AsyncSession, settings: Settings, upload: Upload) -> Upload:
    """``repository.add`` of a pending upload, within its owner's quota (held until commit)."""
    await reserve(session, settings, [upload])
    return await uploads_repository.add(session, upload)


async def reserve(session: AsyncSession, settings: Settings, uploads: Sequence[Upload]) -> None:
    """Refuse (413) new rows of ``session`` that would take their owner past the quota.

    The owner's usage stays locked until the session commits, so the rows
    must be written in this transaction. Rows already flushed are in the
    usage the database counts; only those still staged are added to it.
    """
    quota = settings.user_quota_bytes
    if quota is None or not uploads:
        return
    owner_id = uploads[0].owner_id
    sizes = [upload.size_bytes for upload in uploads if _not_flushed(session, upload)]
    requested = None if None in sizes else sum(size or 0 for size in sizes)
    stored = await repository.lock_stored_bytes(session, owner_id=owner_id)
    if not _fits(stored, requested=requested, quota=quota):
        raise _refusal(stored, requested=requested, quota=quota)


@dataclass(frozen=True, slots=True)
class Room:
    """What a user's quota leaves, read before a body streams in."""

    stored: StoredBytes
    quota: int

    @property
    def left(self) -> int:
        return max(self.quota - self.stored.used_bytes, 0)

    def refusal(self, requested: int) -> QuotaExceeded:
        return _refusal(self.stored, requested=requested, quota=self.quota)


async def room_for(session: AsyncSession, settings: Settings, principal: Principal) -> Room | None:
    """The caller's room, for a streamed upload to stop at; None without a quota.

    Read on a connection of its own that commits at once: ``session`` must
    not begin a transaction while the body streams (services/incoming_files.py).
    """
    quota = settings.user_quota_bytes
    if quota is None:
        return None
    engine = session.bind
    assert isinstance(engine, AsyncEngine), "sessions are bound to the engine (db.py)"
    stored = await repository.read_stored_bytes(engine, owner_id=principal.user_id)
    return Room(stored, quota)


def _not_flushed(session: AsyncSession, upload: Upload) -> bool:
    return upload not in session or upload in session.new


_STAGED = "uploadsvc.quota_staged"


def stage(settings: Settings, upload: Upload, session: AsyncSession) -> None:
    """Count ``upload`` (staged, not flushed) against its quota when ``reserve_staged`` runs.

    For the routes that stream a file before they touch the database
    (services/incoming_files.py): the check waits for the short commit that
    records the rows, since no transaction may be open while the body streams.
    """
    if settings.user_quota_bytes is not None:
        session.info.setdefault(_STAGED, (settings, []))[1].append(upload)


async def reserve_staged(session: AsyncSession) -> None:
    """``reserve`` the uploads ``stage`` noted, just before the session commits them."""
    staged: tuple[Settings, list[Upload]] | None = session.info.pop(_STAGED, None)
    if staged is not None:
        settings, uploads = staged
        await reserve(session, settings, uploads)


async def refuse_undeclared(
    session: AsyncSession, settings: Settings, upload: Upload, *, size: int
) -> QuotaExceeded | None:
    """The 413 for confirming ``size`` bytes of an upload that declared none, if they do not fit.

    Its pending row counts nothing, so the usage locked here plus ``size`` is
    what confirming it would make; the lock holds until the confirm commits.
    """
    quota = settings.user_quota_bytes
    if quota is None or upload.size_bytes is not None:
        return None
    stored = await repository.lock_stored_bytes(session, owner_id=upload.owner_id)
    if stored.used_bytes + size <= quota:
        return None
    return _refusal(stored, requested=size, quota=quota)


async def usage(engine: AsyncEngine, settings: Settings, *, principal: Principal) -> Usage:
    """``GET /v1/usage``: what the caller stores, and what their quota leaves."""
    stored = await repository.read_stored_bytes(engine, owner_id=principal.user_id)
    quota = settings.user_quota_bytes
    return Usage(
        used_bytes=stored.used_bytes,
        confirmed_bytes=stored.confirmed_bytes,
        pending_bytes=stored.pending_bytes,
        files=stored.files,
        quota_bytes=quota,
        remaining_bytes=None if quota is None else max(quota - stored.used_bytes, 0),
    )
