"""The body of ``GET /v1/webhooks/deliveries``."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, Field


class AttemptRead(BaseModel):
    number: int = Field(description="1 for the first attempt.")
    attempted_at: dt.datetime
    status_code: int | None = Field(description="The receiver's status; null without an answer.")
    error: str | None = Field(description="Why the attempt failed; null when it was delivered.")
    duration_ms: int


class DeliveryRead(BaseModel):
    id: str = Field(description="The message's `webhook-id`, the same on every attempt.")
    event_type: str = Field(description="e.g. `file.confirmed`.")
    status: Literal["pending", "delivered", "failed"]
    created_at: dt.datetime
    delivered_at: dt.datetime | None
    attempts: list[AttemptRead]


class DeliveryList(BaseModel):
    items: list[DeliveryRead]
