"""Opaque cursors of keyset pagination: the sort key of a page's last row, for the next page."""

from __future__ import annotations

import base64
import binascii
import json

from uploadsvc.errors import BadRequest


def encode(*fields: str) -> str:
    """A cursor naming the sort key ``fields`` (URL-safe base64 of a JSON list, unpadded)."""
    raw = json.dumps(list(fields), separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, *, fields: int) -> list[str]:
    """The ``fields`` strings of a cursor ``encode`` made; 400 ``invalid_cursor`` otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError):
        values = None
    if (
        not isinstance(values, list)
        or len(values) != fields
        or not all(isinstance(value, str) for value in values)
    ):
        raise invalid()
    return values


def invalid() -> BadRequest:
    """The error for a cursor that no page handed out."""
    return BadRequest("The cursor is not valid.", code="invalid_cursor")
