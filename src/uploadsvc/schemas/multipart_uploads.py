"""Request and response bodies of client multipart uploads (parts presigned one by one)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from uploadsvc.schemas.text import Text
from uploadsvc.schemas.uploads import UploadUrlRequest
from uploadsvc.storage.base import MAX_PART_NUMBER

# At most this many parts: one response can then carry the URL of every part
# (S3 itself allows 10,000).
MAX_PARTS = 1000


class MultipartUploadRequest(UploadUrlRequest):
    """A large file, uploaded in parts straight to storage."""


class PartUrl(BaseModel):
    part_number: int
    url: str
    size: int | None = Field(
        description="The part's exact size in bytes (signed into the URL); null when the "
        "upload's total size was not declared."
    )
    headers: dict[str, str] = Field(
        default_factory=dict, description="Send exactly these headers with the PUT."
    )


class MultipartUploadResponse(BaseModel):
    upload_id: uuid.UUID
    file_key: str
    part_size: int = Field(description="Every part but the last has this size.")
    parts: list[PartUrl]
    expires_in: int = Field(description="Seconds until the part URLs expire.")
    expires_at: dt.datetime


class UploadedPartRead(BaseModel):
    part_number: int
    size: int
    etag: str


class UploadedParts(BaseModel):
    """What storage has received so far: resume by uploading the missing parts."""

    upload_id: uuid.UUID
    file_key: str
    part_size: int | None
    parts: list[UploadedPartRead]


class PartUrlsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    part_numbers: list[Annotated[int, Field(ge=1, le=MAX_PART_NUMBER)]] = Field(
        min_length=1, max_length=MAX_PARTS
    )


class PartUrls(BaseModel):
    parts: list[PartUrl]
    expires_in: int
    expires_at: dt.datetime


class CompletedPart(BaseModel):
    part_number: int = Field(ge=1, le=MAX_PART_NUMBER)
    etag: Text = Field(min_length=1, max_length=128, description="The ETag storage answered.")


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[CompletedPart] = Field(min_length=1, max_length=MAX_PART_NUMBER)
