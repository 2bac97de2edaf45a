"""Queries on webhook deliveries and attempts. Repositories flush; the caller's scope commits."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc.models.webhooks import DeliveryStatus, WebhookAttempt, WebhookDelivery


def stage_delivery(session: AsyncSession, *, event_type: str, payload: str) -> WebhookDelivery:
    """A pending delivery, only staged: the commit of the change it announces writes it."""
    delivery = WebhookDelivery(
        id=uuid.uuid4(),
        event_type=event_type,
        payload=payload,
        status=DeliveryStatus.PENDING,
        attempts=0,
    )
    session.add(delivery)
    return delivery


async def get_delivery(session: AsyncSession, *, delivery_id: uuid.UUID) -> WebhookDelivery | None:
    return await session.get(WebhookDelivery, delivery_id)


async def record_attempt(
    session: AsyncSession,
    delivery: WebhookDelivery,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    outcome: DeliveryStatus,
    at: dt.datetime,
) -> None:
    """One attempt's row, and the delivery's count and state after it."""
    delivery.attempts += 1
    delivery.last_attempt_at = at
    delivery.status = outcome
    if outcome is DeliveryStatus.DELIVERED:
        delivery.delivered_at = at
    session.add(
        WebhookAttempt(
            delivery_id=delivery.id,
            number=delivery.attempts,
            attempted_at=at,
            status_code=status_code,
            error=error[:255] if error else None,
            duration_ms=duration_ms,
        )
    )
    await session.flush()


async def pending_ids(
    session: AsyncSession, *, created_before: dt.datetime, limit: int
) -> list[uuid.UUID]:
    """Deliveries still pending since before ``created_before``, oldest first."""
    pending = WebhookDelivery.status == DeliveryStatus.PENDING
    query = select(WebhookDelivery.id).where(pending, WebhookDelivery.created_at < created_before)
    return list(await session.scalars(query.order_by(WebhookDelivery.created_at).limit(limit)))


async def list_deliveries(
    session: AsyncSession, *, status: DeliveryStatus | None, limit: int
) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """The newest deliveries, each with its attempts in order."""
    query = select(WebhookDelivery).order_by(
        WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    deliveries = list((await session.scalars(query.limit(limit))).all())
    attempts: dict[uuid.UUID, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        rows = await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.number)
        )
        for attempt in rows:
            attempts[attempt.delivery_id].append(attempt)
    return [(delivery, attempts[delivery.id]) for delivery in deliveries]
