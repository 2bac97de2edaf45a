"""Bodies of confirmed files: one file, a page of them, a download URL."""

from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, Field

from uploadsvc.models.uploads import ScanState, UploadStatus
from uploadsvc.profiles import Purpose
from uploadsvc.schemas.images import ImageVariantRead


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
    scan: ScanState | None = Field(
        default=None,
        description="The malware scan: `pending` until scanned, then `clean`, `infected` or "
        "`unscanned_too_large`; null when scanning was off. Only null and `clean` files "
        "are served.",
    )
    variants: list[ImageVariantRead] | None = Field(
        default=None,
        description="`GET /v1/files/{id}` of an image: its variants, as "
        "`GET /v1/files/{id}/variants` lists them. Null elsewhere.",
    )


class ConfirmedFile(FileRead):
    """The confirm body: the file plus a fresh download URL (null until the scan is clean)."""

    download_url: str | None
    expires_in: int | None


class InfectedFile(FileRead):
    """A file the malware scanner flagged (admins' list)."""

    owner_id: str
    signature: str | None = Field(description="The signature clamd named.")
    scanned_at: dt.datetime | None


class InfectedFileList(BaseModel):
    items: list[InfectedFile]


class FileListItem(FileRead):
    """A file in a list; with ``urls=true`` it carries a download URL as well."""

    download_url: str | None = Field(
        default=None, description="With `urls=true`: a URL that downloads the file."
    )
    expires_in: int | None = Field(
        default=None, description="With `urls=true`: seconds until `download_url` expires."
    )


class FileList(BaseModel):
    items: list[FileListItem]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null at the end."
    )


class DownloadUrl(BaseModel):
    download_url: str
    expires_in: int
