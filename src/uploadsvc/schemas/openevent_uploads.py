"""Bodies of the Open Event compatible upload routes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from uploadsvc.schemas.text import Text


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


class FileUrl(BaseModel):
    url: str = Field(description="Works without auth until it expires.")


class FileUrls(BaseModel):
    url: list[str]


class ImageData(BaseModel):
    data: Text = Field(description="A `data:image/...;base64,...` URI.")
