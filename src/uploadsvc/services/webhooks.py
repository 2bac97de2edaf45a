"""Webhooks (docs/api.md, "Webhooks"): events recorded with their change, sent after it.

``emit`` stages a delivery row in the session that makes the change (the
outbox) and defers its job to that session's commit; the job (arq
``deliver_webhook``, or this process without Redis) runs ``deliver``:
read the row, POST it signed (``webhook_sender.py``) with no transaction
open, record the attempt. A non-2xx or no answer is tried again after a
doubling backoff until ``webhook_max_attempts``; then the delivery is
failed. ``reconcile_webhooks`` enqueues deliveries still pending (a lost
enqueue, a worker that died), so an event committed is sent at least once:
receivers recognise repeats by ``webhook-id``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from uploadsvc import metrics
from uploadsvc.config import Settings
from uploadsvc.db import utcnow
from uploadsvc.errors import Forbidden
from uploadsvc.job_queue import enqueue_after_commit
from uploadsvc.models.uploads import Upload
from uploadsvc.models.webhooks import DeliveryStatus, WebhookDelivery
from uploadsvc.repository import webhooks as repository
from uploadsvc.resources import Resources
from uploadsvc.schemas.webhooks import AttemptRead, DeliveryList, DeliveryRead
from uploadsvc.security import Principal

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 3600
# A delivery pending this long after its event has lost its job (or is between
# retries, which an enqueue by its fixed job id does not disturb).
RECONCILE_AFTER = dt.timedelta(seconds=60)
RECONCILE_BATCH = 500


class WebhookRetry(Exception):
    """The attempt failed and another is due after ``defer_seconds``."""

    def __init__(self, defer_seconds: float) -> None:
        super().__init__(f"webhook attempt failed; next in {defer_seconds:.1f} s")
        self.defer_seconds = defer_seconds


def message_id(delivery_id: uuid.UUID) -> str:
    """The ``webhook-id`` of a delivery, the same on every attempt."""
    return f"msg_{delivery_id.hex}"


def emit(session: AsyncSession, settings: Settings, event_type: str, data: dict[str, Any]) -> None:
    """Record ``event_type`` in ``session`` and send it once the session has committed.

    No I/O: the row is written by the commit of the change it announces.
    """
    if settings.webhook_url is None:
        return
    body = {"type": event_type, "timestamp": utcnow().isoformat(), "data": data}
    delivery = repository.stage_delivery(
        session, event_type=event_type, payload=json.dumps(body, separators=(",", ":"))
    )
    enqueue_after_commit(session, "webhook", delivery.id)


def file_data(upload: Upload) -> dict[str, Any]:
    """The ``data`` of the file events."""
    return {
        "file_id": str(upload.id),
        "owner_id": upload.owner_id,
        "purpose": upload.purpose,
        "filename": upload.filename,
        "content_type": upload.content_type,
        "size_bytes": upload.size_bytes,
        "sha256": upload.sha256,
    }


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """The wait after the ``attempts``-th failed attempt: base, twice it, four times..."""
    return float(
        min(settings.webhook_retry_backoff_seconds * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
    )


async def deliver(resources: Resources, delivery_id: uuid.UUID) -> None:
    """One attempt of a delivery; ``WebhookRetry`` when another is due."""
    sender = resources.webhook_sender
    if sender is None:
        return
    async with resources.session_factory() as session:
        delivery = await repository.get_delivery(session, delivery_id=delivery_id)
        if delivery is None or delivery.status is not DeliveryStatus.PENDING:
            return
    # The session is closed: nothing is held while the receiver takes its time.
    result = await sender.send(message_id=message_id(delivery.id), body=delivery.payload)
    settings = resources.settings
    outcome = DeliveryStatus.DELIVERED if result.delivered else DeliveryStatus.PENDING
    if not result.delivered and delivery.attempts + 1 >= settings.webhook_max_attempts:
        outcome = DeliveryStatus.FAILED
    async with resources.session_factory() as session, session.begin():
        current = await repository.get_delivery(session, delivery_id=delivery_id)
        if current is None:
            return
        await repository.record_attempt(
            session,
            current,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            outcome=outcome,
            at=utcnow(),
        )
        attempts = current.attempts
    retried = outcome is DeliveryStatus.PENDING
    metrics.webhook_attempted(
        event_type=delivery.event_type, outcome="retried" if retried else outcome.value
    )
    if outcome is DeliveryStatus.FAILED:
        logger.error("webhook %s failed after %d attempts: %s", delivery_id, attempts, result.error)
    elif outcome is DeliveryStatus.PENDING:
        logger.warning("webhook %s attempt %d failed: %s", delivery_id, attempts, result.error)
        raise WebhookRetry(backoff_seconds(settings, attempts))


async def reconcile_webhooks(
    resources: Resources, *, older_than: dt.timedelta = RECONCILE_AFTER
) -> int:
    """Enqueue deliveries still pending ``older_than`` after their event; returns how many."""
    if resources.webhook_sender is None:
        return 0
    async with resources.session_factory() as session:
        due = await repository.pending_ids(
            session, created_before=utcnow() - older_than, limit=RECONCILE_BATCH
        )
    # By fixed job ids: a delivery waiting for its retry is not run twice.
    await asyncio.gather(*(resources.jobs.enqueue_webhook(delivery_id) for delivery_id in due))
    return len(due)


async def list_deliveries(
    session: AsyncSession, *, principal: Principal, status: DeliveryStatus | None, limit: int
) -> DeliveryList:
    """``GET /v1/webhooks/deliveries``: admins see every delivery and its attempts."""
    if not principal.is_admin:
        raise Forbidden("Only admins can list webhook deliveries.", code="admin_only")
    rows = await repository.list_deliveries(session, status=status, limit=limit)
    return DeliveryList(items=[_delivery_read(delivery, attempts) for delivery, attempts in rows])


def _delivery_read(delivery: WebhookDelivery, attempts: list[Any]) -> DeliveryRead:
    return DeliveryRead(
        id=message_id(delivery.id),
        event_type=delivery.event_type,
        status=delivery.status.value,
        created_at=delivery.created_at,
        delivered_at=delivery.delivered_at,
        attempts=[
            AttemptRead(
                number=attempt.number,
                attempted_at=attempt.attempted_at,
                status_code=attempt.status_code,
                error=attempt.error,
                duration_ms=attempt.duration_ms,
            )
            for attempt in attempts
        ],
    )
