"""The Open Event compatible upload routes.

Files (``/v1/upload/file``) and data-URI images (``/v1/upload/image``),
answered with URLs that work without auth until they expire.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import content_types as ct
from uploadsvc.bodies import JSON_MEMBERS_BYTES, json_string_member
from uploadsvc.config import Settings
from uploadsvc.errors import (
    BadRequest,
    Unprocessable,
)
from uploadsvc.formdata import FormReader
from uploadsvc.models.uploads import Upload
from uploadsvc.profiles import Profile, Purpose, profile_for
from uploadsvc.security import Principal
from uploadsvc.services import scanning
from uploadsvc.services.files import download_grant
from uploadsvc.services.incoming_files import (
    IncomingFile,
    form_parts,
    record_all_or_nothing,
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

    uploads = await store_all_or_nothing(session, storage, each())
    if not uploads:
        raise Unprocessable("The form has no part named 'file' or 'files[]'.", code="missing_file")
    return [await _public_url(storage, settings, upload) for upload in uploads], several


_DATA_URI = re.compile(
    r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w-]+=[^;,]*)*);base64,", re.ASCII
)
# `data:image/png;base64,` and any parameters: where the base64 starts is
# known within this many bytes, or the value is not an image data URI.
_DATA_URI_HEADER_BYTES = 256
# What the body holds besides the base64 text: the data URI's header and the JSON around it.
_IMAGE_BODY_OVERHEAD = _DATA_URI_HEADER_BYTES + 2 * JSON_MEMBERS_BYTES


def image_body_limit(settings: Settings) -> int:
    """The largest body of ``POST /v1/upload/image``: base64 is 4/3 of the image, rounded up."""
    return -(-settings.max_image_bytes // 3) * 4 + _IMAGE_BODY_OVERHEAD


async def open_event_image(
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    *,
    principal: Principal,
    body: AsyncIterator[bytes],
) -> str:
    """``POST /v1/upload/image``: a JSON body whose ``data`` is a base64 image ``data:`` URI.

    The body is never held whole: the ``data`` string streams out of the
    JSON, its base64 is decoded chunk by chunk, and ``store_file`` checks
    the first decoded bytes (magic bytes against the declared type) before
    it reads the rest.
    """
    declared, decoded = await _data_uri(json_string_member(body, "data"))
    profile = Profile(Purpose.ATTACHMENT, ct.IMAGE_TYPES, settings.max_image_bytes)
    upload = await store_file(
        session,
        storage,
        settings,
        principal=principal,
        profile=profile,
        incoming=IncomingFile(_image_name(declared), declared, decoded),
    )
    upload = await scanning.scan_before_serving(session, storage, settings, upload)
    await record_all_or_nothing(session, storage, [upload])
    return await _public_url(storage, settings, upload, disposition="inline")


def _image_name(declared: str | None) -> str:
    # Data URIs carry no name; the extension follows the type (the checked
    # type is the declared one whenever an image type is declared).
    if declared is not None and ct.canonical_type(declared) in ct.IMAGE_TYPES:
        return "image" + ct.extension_for(declared)
    return "image"


def _invalid_data_uri(detail: str = "'data' must be a base64 data: URI.") -> Unprocessable:
    return Unprocessable(detail, code="invalid_data_uri")


async def _data_uri(value: AsyncIterator[bytes]) -> tuple[str | None, AsyncIterator[bytes]]:
    """The declared type of a base64 ``data:`` URI, and its decoded bytes as they arrive."""
    head = bytearray()
    async for piece in value:
        head.extend(piece)
        if b"," in head or len(head) >= _DATA_URI_HEADER_BYTES:
            break
    comma = head.find(b",", 0, _DATA_URI_HEADER_BYTES)
    try:
        match = _DATA_URI.fullmatch(head[: comma + 1].decode("ascii")) if comma >= 0 else None
    except UnicodeDecodeError:
        match = None
    if match is None:
        raise _invalid_data_uri()
    declared = match.group("type") or "application/octet-stream"
    return declared, _base64_decoded(bytes(head[comma + 1 :]), value)


async def _base64_decoded(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Strict base64 (no whitespace, padding only at the end), decoded chunk by chunk."""

    async def pieces() -> AsyncIterator[bytes]:
        yield first
        async for piece in rest:
            yield piece

    carry = b""
    padded = False
    async for piece in pieces():
        if not piece:
            continue
        if padded:
            raise _invalid_data_uri("The data URI has data after its base64 padding.")
        text = carry + piece
        usable = len(text) - len(text) % 4
        carry = text[usable:]
        if not usable:
            continue
        try:
            decoded = binascii.a2b_base64(text[:usable], strict_mode=True)
        except binascii.Error:
            raise _invalid_data_uri("The data URI is not valid base64.") from None
        padded = text[usable - 1] == ord("=")
        if padded and carry:
            raise _invalid_data_uri("The data URI has data after its base64 padding.")
        if decoded:
            yield decoded
    if carry:
        raise _invalid_data_uri("The data URI is not valid base64 (its length).")


async def _public_url(
    storage: Storage, settings: Settings, upload: Upload, *, disposition: str = "attachment"
) -> str:
    """A URL that works without auth until it expires (a presigned GET)."""
    return await storage.presign_get(
        download_grant(
            upload.file_key,
            filename=upload.filename,
            content_type=upload.content_type,
            expires_in=settings.download_url_expires_seconds,
            disposition=disposition,
        )
    )
