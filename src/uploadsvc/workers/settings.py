"""The arq worker that ``uploadsvc worker`` runs: its functions, cron schedule and limits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from typing import Any

from arq.connections import RedisSettings
from arq.cron import CronJob, cron
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from uploadsvc.config import Settings
from uploadsvc.resources import open_resources
from uploadsvc.services.images import MAX_TRIES as MAX_VARIANT_TRIES
from uploadsvc.workers.jobs import (
    cleanup_job,
    import_event,
    make_image_variants,
    reconcile_job,
    reconcile_scans_job,
    scan_file,
)

# Time an import job has, past its own deadline, to delete what it stored and
# record its outcome before arq cancels it.
IMPORT_GRACE_SECONDS = 5

# After Redis is lost the worker starts again after 1 s, 2 s, 4 s... at most
# 30 s apart; a worker that ran this long before it lost Redis starts the
# count again at 1 s.
RECONNECT_FIRST_DELAY_SECONDS = 1.0
RECONNECT_MAX_DELAY_SECONDS = 30.0
RECONNECT_RESET_AFTER_SECONDS = 60.0
# How long a stopping worker may take to finish its jobs and close its clients.
CLOSE_TIMEOUT_SECONDS = 30.0
# What a lost or unreachable Redis raises out of arq's polling loop.
_REDIS_OUTAGE = (RedisConnectionError, RedisTimeoutError, OSError)

logger = logging.getLogger(__name__)


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

    def reconciler(job: WorkerCoroutine, *, second: int) -> CronJob:
        # Once a minute, and at startup: what a lost job left behind is found soon.
        return cron(
            job,
            second={second},
            unique=True,
            run_at_startup=True,
            timeout=settings.job_timeout_seconds,
        )

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
            # Scans: keep_result=0 and a fixed job id as for imports; a scan
            # still pending after max_tries is enqueued again by its reconciler.
            # A scan stops itself at clamd_timeout_seconds; its arq timeout
            # stays below the import's, which sets arq's in-progress lease.
            func(
                scan_file,
                name="scan_file",
                timeout=settings.job_timeout_seconds,
                keep_result=0,
                max_tries=settings.scan_max_tries,
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
            reconciler(reconcile_job, second=0),
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
    if settings.scan_backend == "clamd":
        # Files left pending (Redis lost their job, its tries ran out) are
        # enqueued again; with scanning off there is nothing to reconcile.
        options["cron_jobs"].append(reconciler(reconcile_scans_job, second=30))
    options.update(overrides)
    return Worker(**options)


def run_worker(settings: Settings, **overrides: Any) -> None:
    """Run the worker until SIGINT or SIGTERM; a Redis outage does not end it.

    arq's own ``Worker.run`` returns as soon as Redis drops a connection, and
    then the imports accepted meanwhile wait for a person to restart it.
    Here a worker that lost Redis is closed and a new one started, with
    backoff, until Redis answers again (docs/api.md, "Outages").
    """
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(supervise_worker(settings, **overrides))


async def supervise_worker(settings: Settings, **overrides: Any) -> None:
    loop = asyncio.get_running_loop()
    supervisor = asyncio.current_task()
    assert supervisor is not None
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, supervisor.cancel)
    delay = RECONNECT_FIRST_DELAY_SECONDS
    while True:
        # Signals are the supervisor's: it outlives each worker.
        worker = create_worker(settings, handle_signals=False, **overrides)
        began = time.monotonic()
        try:
            await worker.async_run()
        except asyncio.CancelledError:
            await _close(worker)
            raise
        except _REDIS_OUTAGE as exc:
            logger.warning("worker lost Redis (%s); starting again in %.0f s", exc, delay)
            await _abandon(worker)
        else:
            await _close(worker)  # burst mode: the queue is empty
            return
        if time.monotonic() - began > RECONNECT_RESET_AFTER_SECONDS:
            delay = RECONNECT_FIRST_DELAY_SECONDS
        await asyncio.sleep(delay)
        delay = min(delay * 2, RECONNECT_MAX_DELAY_SECONDS)


async def _close(worker: Worker) -> None:
    """arq's own close: finish the jobs, run the shutdown hook, close the pool."""
    try:
        await asyncio.wait_for(worker.close(), CLOSE_TIMEOUT_SECONDS)
    except _REDIS_OUTAGE:  # a timeout of close() is an OSError too
        await _abandon(worker)


async def _abandon(worker: Worker) -> None:
    """Close a worker whose Redis is gone: its jobs end, its clients close, quietly.

    A job that was running finishes (its outcome lives in the database);
    arq cannot record it, so the job runs again once its lease expires,
    which the jobs allow (workers/jobs.py).
    """
    tasks = list(worker.tasks.values())
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*tasks, return_exceptions=True), CLOSE_TIMEOUT_SECONDS
        )
    for task in tasks:
        task.cancel()
    if worker.on_shutdown is not None:
        with contextlib.suppress(Exception):
            await worker.on_shutdown(worker.ctx)
    pool = worker._pool  # arq keeps it private; its close only frees sockets here
    if pool is not None:
        with contextlib.suppress(Exception):
            await pool.close(close_connection_pool=True)
        worker._pool = None
