"""Bounds on request bodies, checked before (or while) they are read."""

from __future__ import annotations

from collections.abc import AsyncIterator

from uploadsvc.errors import (
    BadRequest,
    PayloadTooLarge,
)

# Multipart framing around a file (boundaries, part headers, small fields):
# an honest Content-Length above limit + this is over the limit for sure.
FORM_OVERHEAD_BYTES = 64 * 1024


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


async def read_limited(body: AsyncIterator[bytes], limit: int) -> bytes:
    """A small request body, read whole but refused (413) as soon as it passes ``limit``."""
    data = bytearray()
    async for chunk in body:
        data.extend(chunk)
        if len(data) > limit:
            raise PayloadTooLarge(f"The body is over the {limit}-byte limit.", code="too_large")
    return bytes(data)
