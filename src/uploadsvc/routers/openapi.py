"""Request bodies that FastAPI cannot describe by itself.

The streaming routes take the raw ``Request`` (never FastAPI's ``File`` or
``Form``, which spool the body first), so their bodies are described for
OpenAPI by hand.
"""

from __future__ import annotations

from typing import Any

from uploadsvc.errors import (
    BadRequest,
    Conflict,
    Gone,
    NotFound,
    PayloadTooLarge,
    StorageError,
    Unprocessable,
    UnsupportedMediaType,
    error_responses,
)

BINARY: dict[str, Any] = {"type": "string", "format": "binary"}


def form_data_body(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """``openapi_extra`` for a ``multipart/form-data`` body with these fields."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": fields, "required": required}
                }
            },
        }
    }


def untitled(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema without its title, so a generated client names the body after its route."""
    return {key: value for key, value in schema.items() if key != "title"}


# What a route that streams a file through the service can answer besides
# its success: a malformed body, too large, a refused type, a file that
# fails its checks, storage unavailable.
STREAMED_UPLOAD_ERRORS = error_responses(
    BadRequest, PayloadTooLarge, UnsupportedMediaType, Unprocessable, StorageError
)
# A declared upload (presigned or multipart) is refused for the same reasons
# before any byte is sent.
DECLARED_UPLOAD_ERRORS = STREAMED_UPLOAD_ERRORS
# What a route on an upload already under way can answer: no such upload,
# one in another state, one that expired, a stored object that fails its checks.
PENDING_UPLOAD_ERRORS = error_responses(NotFound, Conflict, Gone, Unprocessable, StorageError)
# Signing parts adds a malformed list of part numbers to those.
PART_URL_ERRORS = error_responses(BadRequest, NotFound, Conflict, Gone, Unprocessable, StorageError)
