"""Presigned uploads: hand out a URL, then confirm what storage received.

The flow (docs/api.md, "Presigned upload"): ``request_upload_url`` records a *pending* upload owned
by the caller and signs a PUT for exactly the declared bytes, to the
upload's staging key; the client uploads straight to storage;
``confirm_upload`` moves the object to the file's key, checks it there
(size, type, checksum, magic bytes) and makes it the caller's file, or
rejects it and deletes the object.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from uploadsvc import content_types as ct
from uploadsvc import metrics
from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import (
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    StorageError,
    Unprocessable,
    UnsupportedMediaType,
)
from uploadsvc.job_queue import keep_committed
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.profiles import Purpose, file_key_of, profile_for, sanitize_filename, staging_key
from uploadsvc.repository import uploads as repository
from uploadsvc.schemas.files import ConfirmedFile
from uploadsvc.schemas.uploads import UploadUrlRequest, UploadUrlResponse
from uploadsvc.security import Principal
from uploadsvc.services import images, quotas, scanning, webhooks
from uploadsvc.services.files import confirmed_body
from uploadsvc.storage import ObjectInfo, Storage
from uploadsvc.storage.base import PutGrant

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class UndeclaredSize:
    """A file declared without its size or checksum (Uppy's S3 protocol sends neither).

    Storage and confirm then hold the upload to its profile's maximum.
    """

    filename: str
    content_type: str
    purpose: Purpose
    size: None = None
    sha256: None = None


def declare_upload(
    settings: Settings, *, principal: Principal, file: UploadUrlRequest | UndeclaredSize
) -> Upload:
    """A new pending upload owned by the caller, at a fresh key of its profile (not added yet).

    Refuses (415/413) a type or size the profile does not take, before
    anything is stored.
    """
    content_type, size = file.content_type, file.size
    profile = profile_for(settings, file.purpose)
    canonical = ct.canonical_type(content_type)
    if canonical not in profile.allowed_types:
        raise UnsupportedMediaType(
            f"{content_type!r} is not accepted for purpose {profile.purpose.value!r}.",
            code="unsupported_type",
        )
    if size is not None and size > profile.max_bytes:
        raise PayloadTooLarge(
            f"{size} bytes is over the {profile.max_bytes}-byte limit "
            f"for purpose {profile.purpose.value!r}.",
            code="too_large",
        )
    now = utcnow()
    metrics.upload_requested(purpose=profile.purpose.value)
    return Upload(
        id=uuid.uuid4(),
        owner_id=principal.user_id,
        purpose=profile.purpose.value,
        file_key=profile.object_key(user_id=principal.user_id, content_type=canonical, now=now),
        filename=sanitize_filename(file.filename),
        content_type=canonical,
        size_bytes=size,
        sha256=file.sha256,
        status=UploadStatus.PENDING,
        created_at=now,
        url_expires_at=now + dt.timedelta(seconds=settings.upload_url_expires_seconds),
    )


async def request_upload_url(
    engine: AsyncEngine,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    request: UploadUrlRequest,
) -> UploadUrlResponse:
    # The row is this request's only write, so it is one committed INSERT
    # rather than a session's BEGIN, INSERT and COMMIT. It is committed before
    # the URL is signed: a URL is never handed out for an upload not recorded,
    # and a signing failure leaves a pending row that cleanup expires.
    upload = await quotas.insert_pending(
        engine, settings, declare_upload(settings, principal=principal, file=request)
    )
    return await _presigned_put(storage, settings, upload)


async def reissue_upload_url(
    session: AsyncSession, storage: Storage, settings: Settings, *, upload: Upload
) -> UploadUrlResponse:
    """A fresh URL for an upload that is still pending (slow link, expired URL)."""
    if upload.status is not UploadStatus.PENDING:
        raise not_pending(upload)
    if upload.multipart_upload_id is not None or upload.size_bytes is None:
        raise Conflict(
            "This upload is made of parts; ask for part URLs instead "
            "(POST /v1/uploads/{upload_id}/parts/urls).",
            code="multipart_upload",
        )
    await repository.set_url_expiry(
        session,
        upload,
        expires_at=utcnow() + dt.timedelta(seconds=settings.upload_url_expires_seconds),
    )
    return await _presigned_put(storage, settings, upload)


async def _presigned_put(storage: Storage, settings: Settings, upload: Upload) -> UploadUrlResponse:
    expires_in = settings.upload_url_expires_seconds
    assert upload.size_bytes is not None, "a single PUT is only signed for a declared size"
    presigned = await storage.presign_put(
        PutGrant(
            key=staging_key(upload.file_key),
            content_type=upload.content_type,
            content_length=upload.size_bytes,
            sha256=upload.sha256,
            expires_in=expires_in,
        )
    )
    return UploadUrlResponse(
        upload_id=upload.id,
        file_key=upload.file_key,
        upload_url=presigned.url,
        method="PUT",
        headers=presigned.headers,
        expires_in=expires_in,
        expires_at=upload.url_expires_at,
    )


async def find_upload(
    session: AsyncSession,
    *,
    principal: Principal,
    upload_id: uuid.UUID | None = None,
    file_key: str | None = None,
) -> Upload:
    """The caller's upload by id or key; someone else's answers like a missing one."""
    upload = None
    if upload_id is not None:
        upload = await repository.get_visible(session, principal=principal, upload_id=upload_id)
    elif file_key is not None:
        upload = await repository.get_visible_by_key(
            session, principal=principal, file_key=file_key
        )
    if upload is None:
        raise NotFound("No such upload.", code="upload_not_found")
    return upload


async def confirm_by_key(
    engine: AsyncEngine,
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    file_key: str,
) -> ConfirmedFile:
    """``POST /v1/uploads/confirm``: ``confirm_upload`` of the caller's upload with this key.

    Repeated confirms are the common case (clients retry, SDKs confirm
    twice): an upload already confirmed is answered from one autocommit read,
    without a session. Only a pending one is loaded into ``session`` to be
    checked and changed. Uppy names the key its URL wrote to, the staging
    key: it stands for the file's key.
    """
    file_key = file_key_of(file_key)
    seen = await repository.read_visible_by_key(engine, principal=principal, file_key=file_key)
    if seen is None:
        raise NotFound("No such upload.", code="upload_not_found")
    if seen.status is UploadStatus.CONFIRMED:
        return await confirmed_body(storage, settings, seen)
    upload = await find_upload(session, principal=principal, file_key=file_key)
    return await confirm_upload(session, storage, settings, upload=upload)


@dataclass(frozen=True, slots=True)
class _Rejection:
    code: str
    detail: str


async def confirm_upload(
    session: AsyncSession, storage: Storage, settings: Settings, *, upload: Upload
) -> ConfirmedFile:
    """Check the object behind a pending upload and record it as a file.

    Idempotent: confirming a confirmed upload returns its body again, a
    rejected one its 422 again. Concurrent confirms all check the object, but
    only one conditional state change succeeds; the others answer from the
    state it left.
    """
    if upload.status is not UploadStatus.PENDING:
        return await _answer_for_state(storage, settings, upload)

    if not (session.new or session.dirty or session.deleted):
        # Only reads so far: end their transaction, so that the pooled
        # connection is free while storage answers (a slow or hung store
        # would otherwise hold one per confirm). The state change below is a
        # conditional update in a short transaction of its own.
        await session.commit()
    max_bytes = profile_for(settings, Purpose(upload.purpose)).max_bytes
    try:
        info = await _stored_object(storage, upload)
        rejection = None
        if info is not None:
            rejection = (
                _check_metadata(upload, info, max_bytes=max_bytes)
                or await _check_checksum(storage, upload, info)
                or await _check_magic_bytes(storage, upload)
            )
    except NotFound:
        info = None  # there a moment ago: swept since (see below)
    if info is None:
        # No object: while this confirm looked, a concurrent one (or cleanup)
        # may have decided the upload (confirmed it, or expired it and swept
        # its objects). Its state is then the answer, not "upload it first".
        await repository.reload(session, upload)
        if upload.status is not UploadStatus.PENDING:
            return await _answer_for_state(storage, settings, upload)
        raise Conflict(
            "The object has not been uploaded yet; PUT it to the upload URL "
            "(or complete the multipart upload), then confirm.",
            code="object_missing",
        )
    if rejection is not None:
        if await _reject(session, storage, settings, upload, rejection):
            raise Unprocessable(rejection.detail, code=rejection.code)
        return await _answer_for_state(storage, settings, upload)
    # A size nobody declared (Uppy) meets the quota now; the owner's usage
    # stays locked until this confirm commits (docs/api.md, "Quotas").
    over_quota = await quotas.refuse_undeclared(session, settings, upload, size=info.size)
    if over_quota is not None:
        if await _reject(
            session, storage, settings, upload, _Rejection(over_quota.code, over_quota.detail)
        ):
            raise over_quota
        return await _answer_for_state(storage, settings, upload)

    won = await repository.settle_pending(
        session,
        upload,
        UploadStatus.CONFIRMED,
        size_bytes=info.size,
        sha256=info.sha256 or upload.sha256,
        confirmed_at=utcnow(),
    )
    if not won:
        return await _answer_for_state(storage, settings, await repository.reload(session, upload))
    scanning.hold_for_scan(settings, upload, session)
    webhooks.emit(session, settings, "file.confirmed", webhooks.file_data(upload))
    await images.schedule_variants(session, settings, upload)
    metrics.upload_confirmed(purpose=upload.purpose, size_bytes=upload.size_bytes or 0)
    return await confirmed_body(storage, settings, upload)


async def _stored_object(storage: Storage, upload: Upload) -> ObjectInfo | None:
    """The object at the upload's key, moved there from its staging key first.

    A single-request upload's URL writes to the staging key, and can write
    there again until it expires (an S3 POST policy cannot refuse to replace
    an object). So confirm moves the bytes to the file's key, which no URL
    names and storage never lets be replaced, and checks them there: what
    was checked is what stays. An object already at the key (a multipart
    upload's, or one an unfinished confirm promoted) is checked as it is.
    """
    info = await storage.head(upload.file_key)
    if info is None and upload.multipart_upload_id is None:
        await storage.promote(staging_key(upload.file_key), upload.file_key)
        info = await storage.head(upload.file_key)
    return info


def _check_metadata(upload: Upload, info: ObjectInfo, *, max_bytes: int) -> _Rejection | None:
    if info.size == 0:
        return _Rejection("empty_object", "The uploaded object is empty.")
    if upload.size_bytes is None and info.size > max_bytes:
        return _Rejection(
            "too_large", f"The object has {info.size} bytes; the limit is {max_bytes}."
        )
    if upload.size_bytes is not None and info.size != upload.size_bytes:
        return _Rejection(
            "size_mismatch",
            f"The object has {info.size} bytes; {upload.size_bytes} were declared.",
        )
    if info.content_type is None or ct.canonical_type(info.content_type) != upload.content_type:
        return _Rejection(
            "type_mismatch",
            f"The object was stored as {info.content_type!r}, not {upload.content_type!r}.",
        )
    return None


async def _check_checksum(storage: Storage, upload: Upload, info: ObjectInfo) -> _Rejection | None:
    if upload.sha256 is None:
        return None
    stored = info.sha256
    if stored is None and upload.multipart_upload_id is not None:
        # S3 keeps no whole-object SHA-256 for an object made of parts: hash it.
        stored = await storage.sha256_of(upload.file_key)
    if stored != upload.sha256:
        return _Rejection(
            "checksum_mismatch", "The object's SHA-256 differs from the declared one."
        )
    return None


async def _check_magic_bytes(storage: Storage, upload: Upload) -> _Rejection | None:
    prefix = await storage.read_prefix(upload.file_key, ct.MAGIC_PREFIX_BYTES)
    detected = await ct.detect_type(prefix)
    if ct.bytes_match_type(upload.content_type, detected):
        return None
    return _Rejection(
        "type_mismatch",
        f"The object's bytes are {detected!r}, not the declared {upload.content_type!r}.",
    )


async def refusal(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    upload: Upload,
    *,
    code: str,
    detail: str,
) -> Exception:
    """Reject a pending upload for ``code``; the error to raise (its 422, or the state left)."""
    if await _reject(session, storage, settings, upload, _Rejection(code, detail)):
        return Unprocessable(detail, code=code)
    return not_pending(upload)


async def _reject(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    upload: Upload,
    rejection: _Rejection,
) -> bool:
    """Mark the upload rejected and delete its object; False if another request decided first."""
    won = await repository.settle_pending(
        session, upload, UploadStatus.REJECTED, rejection_code=rejection.code
    )
    if not won:
        await repository.reload(session, upload)
        return False
    data = {**webhooks.file_data(upload), "reason": rejection.code}
    webhooks.emit(session, settings, "upload.rejected", data)
    # The 422 that follows would roll the request back: the rejection must be
    # committed first, and its webhook kept through that rollback. The object
    # goes after the commit, so a crash in between leaves a rejected row whose
    # object cleanup removes.
    await session.commit()
    keep_committed(session)
    metrics.upload_rejected(purpose=upload.purpose, reason=rejection.code)
    logger.info("rejected upload %s: %s", upload.id, rejection.code)
    await _discard_objects(storage, upload)
    return True


async def _answer_for_state(storage: Storage, settings: Settings, upload: Upload) -> ConfirmedFile:
    if upload.status is UploadStatus.CONFIRMED:
        return await confirmed_body(storage, settings, upload)
    raise not_pending(upload)


def not_pending(upload: Upload) -> Exception:
    """The error for acting on an upload that is no longer pending."""
    if upload.status is UploadStatus.REJECTED:
        return Unprocessable(
            "This upload was rejected; request a new upload URL.",
            code=upload.rejection_code or "rejected",
        )
    if upload.status is UploadStatus.CONFIRMED:
        return Conflict("This upload is already confirmed.", code="already_confirmed")
    return Gone(
        f"This upload is {upload.status.value}; request a new upload URL.", code="upload_gone"
    )


async def abort_upload(session: AsyncSession, storage: Storage, *, upload: Upload) -> None:
    """Cancel a pending upload (``DELETE /v1/uploads/{id}``); nothing of it stays in storage.

    Idempotent: an upload that is already finished without becoming a file
    (aborted, rejected, expired) answers the same. A confirmed one is a file:
    it is deleted through ``DELETE /v1/files/{id}``.
    """
    won = await repository.settle_pending(session, upload, UploadStatus.ABORTED)
    if not won:
        await repository.reload(session, upload)
        if upload.status is UploadStatus.CONFIRMED:
            raise Conflict(
                "This upload is already confirmed; delete the file instead.",
                code="already_confirmed",
            )
        return
    # The state first, as for rejections: a confirm can no longer win, and
    # whatever the calls below leave behind, cleanup removes.
    await session.commit()
    try:
        await _discard_objects(storage, upload)
    except StorageError:
        logger.warning("objects of aborted upload %s left for cleanup", upload.id)


async def _discard_objects(storage: Storage, upload: Upload) -> None:
    """What storage holds of an upload that will never be a file: parts, object, staged object."""
    if upload.multipart_upload_id is not None:
        await storage.abort_multipart(
            upload.file_key, multipart_upload_id=upload.multipart_upload_id
        )
    await storage.delete_many([upload.file_key, staging_key(upload.file_key)])
