"""The HTTP side of the local backend: the requests made to its signed URLs.

``routers/local_storage.py`` hands each PUT and GET under ``/v1/storage``
here. A request is served as S3 serves the same presigned URL: its signature
and expiry first (``local_signing.py``), then the signed Content-Type,
Content-Length (or size cap) and SHA-256, ``If-None-Match: *``, and Range on
GET. Where the bytes go and come from is the backend's (``local.py``).
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from uploadsvc.errors import (
    BadRequest,
    Forbidden,
    LengthRequired,
    PayloadTooLarge,
    PreconditionFailed,
    RangeNotSatisfiable,
)
from uploadsvc.storage.base import no_such_object
from uploadsvc.storage.local import LocalStorage, Received
from uploadsvc.storage.local_signing import Param


@dataclass(frozen=True, slots=True)
class Download:
    """What the GET route sends: status, headers and the body as chunks."""

    status: int
    headers: dict[str, str]
    body: AsyncIterator[bytes]


async def receive_put(
    storage: LocalStorage,
    key: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: AsyncIterator[bytes],
) -> str:
    """Store a PUT made to a signed URL (an object or a part); return its ETag."""
    storage.signer.verify("PUT", key, query)
    if Param.MULTIPART_UPLOAD_ID in query:
        # A part. An unknown upload is refused before the body is read.
        folder = await storage.part_folder(key, query[Param.MULTIPART_UPLOAD_ID])
        number = int(query[Param.PART_NUMBER])
        length = _signed_length(query, headers)
        async with storage.receiving(body, limit=length, etag=True) as received:
            _require_whole(received, length)
            await storage.store_part(folder, number, received)
        return f'"{received.digest.hex()}"'
    length, signed_sha256 = _check_object_headers(query, headers)
    if await storage.exists(key):
        raise PreconditionFailed("An object already exists at this key.")
    async with storage.receiving(body, limit=length) as received:
        _require_whole(received, length)
        digest = received.digest
        if signed_sha256 is not None and base64.b64encode(digest).decode() != signed_sha256:
            raise BadRequest("The SHA-256 you specified did not match the body.", code="bad_digest")
        content_type = query[Param.CONTENT_TYPE]
        await storage.publish(received.path, key, content_type=content_type, sha256=digest)
    return f'"{digest.hex()[:32]}"'


async def open_download(
    storage: LocalStorage, key: str, query: Mapping[str, str], range_header: str | None
) -> Download:
    """Answer a GET made to a signed URL: the object, or the one range asked for."""
    storage.signer.verify("GET", key, query)
    info = await storage.head(key)
    if info is None:
        raise no_such_object()
    size = info.size
    # As S3 does: the stored type unless the URL names one; no disposition unless signed.
    headers = {
        "Content-Type": query.get(
            Param.RESPONSE_TYPE, info.content_type or "application/octet-stream"
        ),
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
    }
    if Param.RESPONSE_DISPOSITION in query:
        headers["Content-Disposition"] = query[Param.RESPONSE_DISPOSITION]
    start, end, status = 0, size - 1, 200
    if range_header:
        start, end = _parse_range(range_header, size)
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(end - start + 1, 0))
    return Download(status=status, headers=headers, body=storage.read_range(key, start, end))


def _check_object_headers(
    query: Mapping[str, str], headers: Mapping[str, str]
) -> tuple[int, str | None]:
    """Refuse an object PUT whose headers differ from the signed ones.

    Returns the body's length and the SHA-256 it must have, if one was signed.
    """
    if headers.get("content-type", "") != query.get(Param.CONTENT_TYPE):
        raise Forbidden("Content-Type differs from the signed one.", code="signature_mismatch")
    length = _signed_length(query, headers)
    signed_sha256 = query.get(Param.SHA256)
    if headers.get("x-amz-checksum-sha256") != signed_sha256:
        raise Forbidden(
            "x-amz-checksum-sha256 differs from the signed one.", code="signature_mismatch"
        )
    if query.get(Param.IF_NONE_MATCH) == "*" and headers.get("if-none-match") != "*":
        raise Forbidden("If-None-Match: * is required.", code="signature_mismatch")
    return length, signed_sha256


def _signed_length(query: Mapping[str, str], headers: Mapping[str, str]) -> int:
    """The request's Content-Length, checked against the signed length or size cap."""
    declared_length = headers.get("content-length")
    # isdigit() alone admits digits int() refuses ("²").
    if declared_length is None or not (declared_length.isascii() and declared_length.isdigit()):
        raise LengthRequired("A Content-Length header is required.")
    if Param.MAX_LENGTH in query:
        if int(declared_length) > int(query[Param.MAX_LENGTH]):
            raise PayloadTooLarge(
                "The body is over the size this URL accepts.", code="entity_too_large"
            )
        if int(declared_length) == 0:
            raise BadRequest("The body is empty.", code="entity_too_small")
    elif Param.CONTENT_LENGTH in query and declared_length != query[Param.CONTENT_LENGTH]:
        raise Forbidden("Content-Length differs from the signed one.", code="signature_mismatch")
    elif Param.CONTENT_LENGTH not in query and Param.MULTIPART_UPLOAD_ID not in query:
        raise Forbidden("This URL signs no Content-Length.", code="signature_mismatch")
    return int(declared_length)


def _require_whole(received: Received, length: int) -> None:
    # Longer bodies are cut off while they are received; a shorter one ends early.
    if received.size != length:
        raise BadRequest("The body is shorter than its Content-Length.", code="incomplete_body")


def _parse_range(header: str, size: int) -> tuple[int, int]:
    """One ``bytes=`` range, as S3 accepts it; several ranges are not supported."""
    unit, _, spec = header.partition("=")
    if unit.strip() != "bytes" or "," in spec:
        raise RangeNotSatisfiable("Only a single bytes range is supported.")
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        raise RangeNotSatisfiable("The Range header is malformed.") from None
    if start > end or start >= size:
        raise RangeNotSatisfiable(f"The range does not overlap the object's {size} bytes.")
    return start, end
