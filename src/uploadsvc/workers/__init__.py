"""Background jobs on arq (SPEC §1, §6): the worker process and its schedule.

``create_worker(settings)`` builds the arq ``Worker`` that ``uploadsvc
worker`` runs; its startup opens the same resources as the API (database,
storage) through ``open_resources``. Without Redis (``make dev``) the API
process runs the same job functions itself (``run_in_process_schedule``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import uuid
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func

from uploadsvc.config import Settings
from uploadsvc.resources import Resources, open_resources
from uploadsvc.services.cleanup import CleanupReport, run_cleanup
from uploadsvc.services.imports import reconcile_imports, run_import

logger = logging.getLogger(__name__)


async def import_event(ctx: dict[str, Any], job_id: str) -> None:
    """An Open Event import (enqueued by the API after its commit, id ``import:<job id>``)."""
    await run_import(ctx["resources"], uuid.UUID(job_id))


async def reconcile_job(ctx: dict[str, Any]) -> int:
    """Re-enqueue imports that Redis lost; runs every minute."""
    resources: Resources = ctx["resources"]
    return await reconcile_imports(resources, stale_after=_stale_after(resources.settings))


def _stale_after(settings: Settings) -> dt.timedelta:
    # Longer than a job may run without touching its heartbeat.
    return dt.timedelta(seconds=settings.import_stale_after_seconds)


async def cleanup_job(ctx: dict[str, Any]) -> dict[str, Any]:
    """The scheduled cleanup; returns its counts (kept in arq's result)."""
    resources: Resources = ctx["resources"]
    report = await _cleanup(resources)
    return {"outcome": report.outcome, "deleted": report.deleted, "expired": report.expired}


async def _cleanup(resources: Resources) -> CleanupReport:
    return await run_cleanup(
        resources.session_factory,
        resources.storage,
        older_than=dt.timedelta(seconds=resources.settings.cleanup_older_than_seconds),
    )


def cleanup_schedule(settings: Settings) -> tuple[set[int], set[int] | None]:
    """arq cron (minute, hour) fields for "every N minutes" (validated in Settings)."""
    every = settings.cleanup_every_minutes
    if every < 60:
        return set(range(0, 60, every)), None
    return {0}, set(range(0, 24, every // 60))


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    if not settings.redis_url:
        raise ValueError("the worker needs UPLOADSVC_REDIS_URL")
    stack = contextlib.AsyncExitStack()

    async def startup(ctx: dict[str, Any]) -> None:
        ctx["resources"] = await stack.enter_async_context(open_resources(settings))

    async def shutdown(ctx: dict[str, Any]) -> None:
        await stack.aclose()

    minute, hour = cleanup_schedule(settings)
    options: dict[str, Any] = {
        "functions": [
            # keep_result=0: the outcome lives in PostgreSQL, and a kept arq
            # result would stop the reconciler from enqueueing the id again.
            func(
                import_event,
                name="import_event",
                timeout=settings.job_timeout_seconds,
                keep_result=0,
            )
        ],
        # unique=True (arq's default) gives each scheduled run a fixed job id,
        # so several workers enqueue it once; the lease in run_cleanup keeps a
        # manual `uploadsvc cleanup` from overlapping it too.
        "cron_jobs": [
            cron(
                cleanup_job,
                minute=minute,
                hour=hour,
                unique=True,
                timeout=settings.job_timeout_seconds,
            ),
            cron(
                reconcile_job,
                second={0},
                unique=True,
                run_at_startup=True,
                timeout=settings.job_timeout_seconds,
            ),
        ],
        "redis_settings": RedisSettings.from_dsn(settings.redis_url),
        # arq polls the queue; its default 0.5 s would dominate the time from
        # "202 Accepted" to "STARTED". 50 ms costs Redis ~20 cheap reads a second.
        "poll_delay": 0.05,
        # Also bounds arq's in-progress lease (the longest timeout + 10 s): how
        # soon another worker takes over the job of a worker that died.
        "job_timeout": settings.job_timeout_seconds,
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
    options.update(overrides)
    return Worker(**options)


async def run_in_process_schedule(resources: Resources) -> None:
    """The dev-mode scheduler: cleanup and the import reconciler, in this process."""
    cleanup_every = resources.settings.cleanup_every_minutes * 60
    elapsed = 0
    while True:
        try:
            await reconcile_imports(resources, stale_after=_stale_after(resources.settings))
        except Exception:
            logger.exception("in-process import reconciler failed")
        await asyncio.sleep(60)
        elapsed += 60
        if elapsed % cleanup_every == 0:
            try:
                await _cleanup(resources)
            except Exception:
                logger.exception("in-process cleanup failed; retrying at the next interval")
