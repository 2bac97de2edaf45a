"""Request and response bodies of the API."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from uploadsvc.models import UploadStatus
from uploadsvc.profiles import Purpose
from uploadsvc.storage.base import MAX_PART_NUMBER

# At most this many parts: one response can then carry the URL of every part
# (S3 itself allows 10,000).
MAX_PARTS = 1000


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
    etag: str = Field(min_length=1, max_length=128, description="The ETag storage answered.")


class CompleteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    parts: list[CompletedPart] = Field(min_length=1, max_length=MAX_PART_NUMBER)


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_key: str = Field(min_length=1, max_length=1024)


class FileRead(BaseModel):
    file_id: uuid.UUID
    file_key: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str | None = Field(description="Base64 SHA-256, when known.")
    status: UploadStatus
    purpose: Purpose
    created_at: dt.datetime
    confirmed_at: dt.datetime | None


class ConfirmedFile(FileRead):
    """The confirm body: the file plus a fresh download URL."""

    download_url: str
    expires_in: int


class FileList(BaseModel):
    items: list[FileRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class DownloadUrl(BaseModel):
    download_url: str
    expires_in: int


class Health(BaseModel):
    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


# --- Uppy's S3 protocol (@uppy/aws-s3 with an `endpoint`; its field spellings) ---


class UppyUploadParameters(BaseModel):
    """How to upload one small file: a POST of ``fields`` + the file (S3), or a PUT."""

    method: Literal["POST", "PUT"]
    url: str
    fields: dict[str, str]
    headers: dict[str, str]
    expires: int = Field(description="Seconds until the request can no longer be made.")
    key: str


class UppyCreateMultipart(BaseModel):
    filename: str = Field(min_length=1, max_length=1024)
    type: str = Field(min_length=1, max_length=255)
    metadata: dict[str, Any] = Field(
        default_factory=dict, description="The file's Uppy metadata; `purpose` is honoured."
    )


class UppyMultipartUpload(BaseModel):
    key: str
    uploadId: str


class UppySignedPart(BaseModel):
    url: str
    expires: int


class UppySignedParts(BaseModel):
    presignedUrls: dict[str, str]


class UppyPart(BaseModel):
    PartNumber: int = Field(ge=1, le=MAX_PART_NUMBER)
    ETag: str = Field(min_length=1, max_length=128)
    Size: int | None = None


class UppyCompleteRequest(BaseModel):
    parts: list[UppyPart] = Field(min_length=1, max_length=MAX_PART_NUMBER)


class UppyCompleted(BaseModel):
    location: str = Field(description="A download URL of the confirmed file.")
    key: str


class UppyAborted(BaseModel):
    pass


class OpenEventFileUrl(BaseModel):
    """What `POST /v1/upload/file` answers, as OpenAPI describes it.

    One `file` gives `{"url": "..."}`, several `files[]` give `{"url": [...]}`.
    Documented as one object whose `url` is a string or a list, not as a
    union of two objects that both have a `url`: a generated client cannot
    tell those apart (openapi-python-client read a list as the one-URL kind).
    """

    url: str | list[str] = Field(
        description="One URL, or one per file in the order sent; valid without auth until expiry."
    )
