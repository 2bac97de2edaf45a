from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from uploadsvc.models.images import VariantStatus


class ImageVariantRead(BaseModel):
    name: str = Field(description="`large`, `thumbnail`, `small` or `icon`.")
    status: VariantStatus
    width: int | None = None
    height: int | None = None
    content_type: str | None = None
    size_bytes: int | None = None
    download_url: str | None = Field(default=None, description="Set when `status` is `ready`.")
    expires_in: int | None = None
    failure_reason: str | None = Field(default=None, description="Set when `status` is `failed`.")


class ImageVariantList(BaseModel):
    file_id: uuid.UUID
    items: list[ImageVariantRead]
