from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from arq.worker import Retry

from uploadsvc.config import Settings
from uploadsvc.job_queue import InProcessQueue, retry_after
from uploadsvc.resources import Resources
from uploadsvc.services.cleanup import CleanupReport, run_cleanup
from uploadsvc.services.images import make_variants
from uploadsvc.services.imports import ImportInterrupted, reconcile_imports, run_import
from uploadsvc.services.scanning import ScanInterrupted, reconcile_scans, run_scan
from uploadsvc.services.webhooks import WebhookRetry, deliver, reconcile_webhooks

logger = logging.getLogger(__name__)


async def import_event(ctx: dict[str, Any], job_id: str) -> None:
    """An Open Event import (enqueued by the API after its commit, id ``import:<job id>``)."""
    await run_import_try(ctx["resources"], uuid.UUID(job_id), job_try=ctx["job_try"])


async def run_import_try(resources: Resources, job_id: uuid.UUID, *, job_try: int) -> None:
    """One try of an import job; a transient failure asks its queue for another
    (arq's ``Retry``, after a backoff). arq's ``max_tries`` and the service agree
    on the bound: the last try records FAILURE instead of asking."""
    try:
        await run_import(resources, job_id, job_try=job_try)
    except ImportInterrupted as exc:
        raise retry_after(job_try) from exc


async def scan_file(ctx: dict[str, Any], upload_id: str) -> None:
    """A malware scan of one file (enqueued after the confirm's commit, id ``scan:<file id>``)."""
    await run_scan_try(ctx["resources"], uuid.UUID(upload_id), job_try=ctx["job_try"])


async def run_scan_try(resources: Resources, upload_id: uuid.UUID, *, job_try: int) -> None:
    """One try of a scan; clamd or storage down asks for another after a backoff.
    After the last one the file stays pending and the reconciler enqueues it again."""
    try:
        await run_scan(resources, upload_id)
    except ScanInterrupted as exc:
        raise retry_after(job_try) from exc


async def reconcile_scans_job(ctx: dict[str, Any]) -> int:
    """Re-enqueue scans of files still pending (Redis lost them, their tries ran out)."""
    return await reconcile_scans(ctx["resources"])


async def make_image_variants(ctx: dict[str, Any], file_id: str) -> None:
    """The variants of a confirmed image (enqueued after its commit, id ``variants:<file id>``)."""
    await make_variants(ctx["resources"], uuid.UUID(file_id), job_try=ctx["job_try"])


async def deliver_webhook(ctx: dict[str, Any], delivery_id: str) -> None:
    """One attempt of a webhook delivery (enqueued after its commit, id ``webhook:<id>``)."""
    await run_webhook_try(ctx["resources"], uuid.UUID(delivery_id))


async def run_webhook_try(resources: Resources, delivery_id: uuid.UUID) -> None:
    """An attempt that failed asks for the next after the delivery's own backoff; the
    delivery row counts the attempts, so the queue's count only bounds the loop."""
    try:
        await deliver(resources, delivery_id)
    except WebhookRetry as exc:
        raise Retry(defer=exc.defer_seconds) from exc


async def reconcile_webhooks_job(ctx: dict[str, Any]) -> int:
    """Enqueue webhook deliveries still pending (their enqueue or their worker was lost)."""
    return await reconcile_webhooks(ctx["resources"])


def bind_in_process_jobs(resources: Resources) -> None:
    """Without Redis, this process runs the import, scan and image variant jobs it enqueues."""
    if isinstance(resources.jobs, InProcessQueue):
        resources.jobs.bind(
            lambda job_id, job_try: run_import_try(resources, job_id, job_try=job_try),
            max_tries=resources.settings.import_max_tries,
            run_variants=lambda file_id, job_try: make_variants(
                resources, file_id, job_try=job_try
            ),
        )
        resources.jobs.bind_scan(
            lambda upload_id, job_try: run_scan_try(resources, upload_id, job_try=job_try),
            max_tries=resources.settings.scan_max_tries,
        )
        resources.jobs.bind_webhooks(
            lambda delivery_id, _: run_webhook_try(resources, delivery_id),
            max_tries=resources.settings.webhook_max_attempts,
        )


async def reconcile_job(ctx: dict[str, Any]) -> int:
    """Re-enqueue imports that Redis lost; runs every minute."""
    resources: Resources = ctx["resources"]
    return await reconcile_imports(resources, stale_after=stale_after(resources.settings))


def stale_after(settings: Settings) -> dt.timedelta:
    # Longer than a job may run without touching its heartbeat.
    return dt.timedelta(seconds=settings.import_stale_after_seconds)


async def cleanup_job(ctx: dict[str, Any]) -> dict[str, Any]:
    """The scheduled cleanup; returns its counts (kept in arq's result)."""
    resources: Resources = ctx["resources"]
    report = await scheduled_cleanup(resources)
    return {"outcome": report.outcome, "deleted": report.deleted, "expired": report.expired}


async def scheduled_cleanup(resources: Resources) -> CleanupReport:
    return await run_cleanup(
        resources.session_factory,
        resources.storage,
        older_than=dt.timedelta(seconds=resources.settings.cleanup_older_than_seconds),
        settings=resources.settings,
        jobs=resources.jobs,
    )
