"""The body of ``GET /v1/usage``."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Usage(BaseModel):
    used_bytes: int = Field(description="Confirmed plus pending bytes: what the quota counts.")
    confirmed_bytes: int = Field(description="The sizes of your confirmed files.")
    pending_bytes: int = Field(
        description="The declared sizes of your pending uploads (URLs handed out, not confirmed)."
    )
    files: int = Field(description="How many confirmed files you have.")
    quota_bytes: int | None = Field(description="Your quota; null when there is none.")
    remaining_bytes: int | None = Field(
        description="What an upload may still declare; null when there is no quota."
    )
