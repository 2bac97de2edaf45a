"""The arq worker that ``uploadsvc worker`` runs: its functions, cron schedule and limits."""

from __future__ import annotations

import contextlib
from typing import Any

from arq.connections import RedisSettings
from arq.cron import cron
from arq.worker import Worker, func

from uploadsvc.config import Settings
from uploadsvc.resources import open_resources
from uploadsvc.services.images import MAX_TRIES as MAX_VARIANT_TRIES
from uploadsvc.workers.jobs import cleanup_job, import_event, make_image_variants, reconcile_job

# Time an import job has, past its own deadline, to delete what it stored and
# record its outcome before arq cancels it.
IMPORT_GRACE_SECONDS = 5


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
            # max_tries: a transient failure raises Retry (workers/jobs.py);
            # the job's last try records FAILURE rather than asking again.
            # The job stops itself at job_timeout_seconds (and is retried);
            # arq's timeout, a grace period later, only backs that up.
            func(
                import_event,
                name="import_event",
                timeout=settings.job_timeout_seconds + IMPORT_GRACE_SECONDS,
                keep_result=0,
                max_tries=settings.import_max_tries,
            ),
            # The job kills its child process at image_job_timeout_seconds;
            # keep_result=0 lets the same fixed id be enqueued again.
            func(
                make_image_variants,
                name="make_image_variants",
                timeout=settings.image_job_timeout_seconds + IMPORT_GRACE_SECONDS,
                keep_result=0,
                max_tries=MAX_VARIANT_TRIES,
            ),
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
        # arq's in-progress lease is the longest function timeout + 10 s (for
        # imports: job_timeout_seconds + IMPORT_GRACE_SECONDS + 10 s): how soon
        # another worker takes over the job of a worker that died.
        "job_timeout": settings.job_timeout_seconds,
        "on_startup": startup,
        "on_shutdown": shutdown,
    }
    options.update(overrides)
    return Worker(**options)
