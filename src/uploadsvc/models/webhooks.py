"""Webhook deliveries and their attempts (docs/api.md, "Webhooks").

A delivery row is written in the transaction that makes its event happen
(a confirm, a delete, an import's end), so an event is never announced for
a change that rolled back, nor lost for one that committed: the row is the
outbox the delivery job and its reconciler work from.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid

from sqlalchemy import ForeignKey, Index, Integer, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from uploadsvc.db import Base, UTCDateTime, stored_enum, utcnow


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"  # not answered 2xx yet; tried again after a backoff
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed; not tried again


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"

    # Also the message's `webhook-id` ("msg_" + hex): the receiver's key for
    # recognising a message sent twice.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    event_type: Mapped[str] = mapped_column(String(64))
    # The JSON body sent, byte for byte on every attempt (it is what is signed).
    payload: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        stored_enum(DeliveryStatus, name="delivery_status", length=16),
        default=DeliveryStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        # The reconciler's pending deliveries and the admin list, newest first.
        Index("ix_webhook_deliveries_status_created_at", "status", "created_at"),
    )


class WebhookAttempt(Base):
    """One POST of a delivery to the receiver, and what came of it."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    attempted_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The receiver's status; None when it never answered (error says why).
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(255))
    duration_ms: Mapped[int] = mapped_column(Integer)
