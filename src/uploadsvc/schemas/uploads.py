from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from uploadsvc.profiles import Purpose
from uploadsvc.schemas.text import Text

# What `sha256sum` prints: 64 hex digits. It is also valid base64 (of 48
# bytes), so it is named for what it is rather than reported as a wrong length.
_HEX_DIGEST = re.compile(r"[0-9A-Fa-f]{64}")
HOW_TO_ENCODE = "openssl dgst -sha256 -binary FILE | base64"


class UploadUrlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: Text = Field(min_length=1, max_length=1024, examples=["report.pdf"])
    content_type: Text = Field(min_length=1, max_length=255, examples=["application/pdf"])
    size: int = Field(gt=0, description="Exact size of the file in bytes.", examples=[48213])
    sha256: Text | None = Field(
        default=None,
        description="Base64 of the file's 32-byte SHA-256 digest (not hex: "
        f"`{HOW_TO_ENCODE}`); storage then verifies it.",
        examples=["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="],
    )
    purpose: Purpose = Purpose.ATTACHMENT

    @field_validator("sha256")
    @classmethod
    def _sha256_is_base64_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if _HEX_DIGEST.fullmatch(value):
            raise ValueError(
                "must be the base64 of the 32-byte SHA-256 digest, not its hex form "
                f"(what sha256sum prints): `{HOW_TO_ENCODE}`"
            )
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError(f"must be base64: `{HOW_TO_ENCODE}`") from None
        if len(digest) != 32:
            raise ValueError(f"must be the base64 of a 32-byte SHA-256 digest: `{HOW_TO_ENCODE}`")
        return value


class UploadUrlResponse(BaseModel):
    # `method` is always sent: required in the response schema, so a generated
    # client types it `Literal["PUT"]` rather than "maybe unset".
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    upload_id: uuid.UUID
    file_key: str
    upload_url: str
    method: Literal["PUT"] = "PUT"
    headers: dict[str, str] = Field(
        description="Send exactly these headers with the PUT (they are signed into the URL)."
    )
    expires_in: int = Field(description="Seconds until upload_url expires.")
    expires_at: dt.datetime


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_key: Text = Field(min_length=1, max_length=1024)
