"""The Open Event compatible upload routes.

Files (``/v1/upload/file``) and data-URI images (``/v1/upload/image``),
answered with URLs that work without auth until they expire.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import content_types as ct
from uploadsvc.config import Settings
from uploadsvc.errors import (
    BadRequest,
    PayloadTooLarge,
    Unprocessable,
)
from uploadsvc.formdata import FormReader
from uploadsvc.models.uploads import Upload
from uploadsvc.profiles import Profile, Purpose, content_disposition, profile_for
from uploadsvc.security import Principal
from uploadsvc.services import scanning
from uploadsvc.services.incoming_files import (
    IncomingFile,
    form_parts,
    store_all_or_nothing,
    store_file,
)
from uploadsvc.storage import Storage

# Open Event clients may send several files at once.
MAX_FILES_PER_REQUEST = 20


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
        async for name, _, filename in form_parts(form):
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
            upload = await store_file(
                session, storage, settings, principal=principal, profile=profile, incoming=incoming
            )
            # The URLs answered below work at once: scan first (docs/api.md, "Malware scanning").
            yield await scanning.scan_before_serving(session, storage, settings, upload)

    uploads = await store_all_or_nothing(storage, each())
    if not uploads:
        raise Unprocessable("The form has no part named 'file' or 'files[]'.", code="missing_file")
    return [await _public_url(storage, settings, upload) for upload in uploads], several


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
    upload = await scanning.scan_before_serving(session, storage, settings, upload)
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
