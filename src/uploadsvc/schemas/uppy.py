"""Bodies of the routes that speak Uppy's AWS S3 protocol."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from uploadsvc.schemas.text import Text
from uploadsvc.storage.base import MAX_PART_NUMBER

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
    filename: Text = Field(min_length=1, max_length=1024)
    type: Text = Field(min_length=1, max_length=255)
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
    ETag: Text = Field(min_length=1, max_length=128)
    Size: int | None = None


class UppyCompleteRequest(BaseModel):
    parts: list[UppyPart] = Field(min_length=1, max_length=MAX_PART_NUMBER)


class UppyCompleted(BaseModel):
    location: str = Field(description="A download URL of the confirmed file.")
    key: str


class UppyAborted(BaseModel):
    pass
