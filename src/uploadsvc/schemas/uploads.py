from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from uploadsvc.profiles import Purpose


class UploadUrlRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=1024, examples=["report.pdf"])
    content_type: str = Field(min_length=1, max_length=255, examples=["application/pdf"])
    size: int = Field(gt=0, description="Exact size of the file in bytes.", examples=[48213])
    sha256: str | None = Field(
        default=None,
        description="Base64 of the file's 32-byte SHA-256 digest; storage then verifies it.",
        examples=["47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="],
    )
    purpose: Purpose = Purpose.ATTACHMENT

    @field_validator("sha256")
    @classmethod
    def _sha256_is_base64_digest(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            digest = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("must be base64") from None
        if len(digest) != 32:
            raise ValueError("must be the base64 of a 32-byte SHA-256 digest")
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

    file_key: str = Field(min_length=1, max_length=1024)
