"""Where background jobs go: arq on Redis, or this process when there is no Redis.

Both queues take the same job, by id, with the same job function, so the
task URL a client polls behaves the same in ``make dev`` and in production.
A run that raises arq's ``Retry`` (a transient failure) runs again after the
delay it asks for, on both: arq counts the tries (``job_try``), and so does
``InProcessQueue``, up to the same bound.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Literal

from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus
from arq.worker import Retry
from sqlalchemy.ext.asyncio import AsyncSession

logger = logging.getLogger(__name__)

IMPORT_FUNCTION = "import_event"
SCAN_FUNCTION = "scan_file"
VARIANTS_FUNCTION = "make_image_variants"
WEBHOOK_FUNCTION = "deliver_webhook"
# Seconds to wait before the next try, per try already made: 2 s, 4 s, 6 s...
RETRY_BACKOFF_SECONDS = 2

# One run of an import job: (job id, job_try counted from 1). Raises Retry to run again.
ImportRunner = Callable[[uuid.UUID, int], Awaitable[None]]
# One run of an image variants job: (file id, job_try counted from 1).
VariantsRunner = Callable[[uuid.UUID, int], Awaitable[None]]

# Where a session keeps the jobs to enqueue once it has committed: (kind, id).
_AFTER_COMMIT = "uploadsvc.jobs_after_commit"
# Those whose rows a service committed itself, ahead of an error answer.
_COMMITTED = "uploadsvc.jobs_committed"


def import_job_key(job_id: uuid.UUID) -> str:
    """The arq job id of an import: fixed, so enqueueing twice runs it once."""
    return f"import:{job_id}"


def scan_job_key(upload_id: uuid.UUID) -> str:
    """The arq job id of a file's malware scan: fixed, so a file is scanned once at a time."""
    return f"scan:{upload_id}"


def variants_job_key(file_id: uuid.UUID) -> str:
    """The arq job id of a file's image variants: fixed, so enqueueing twice runs it once."""
    return f"variants:{file_id}"


def webhook_job_key(delivery_id: uuid.UUID) -> str:
    """The arq job id of a webhook delivery: fixed, so a delivery runs once at a time."""
    return f"webhook:{delivery_id}"


def enqueue_after_commit(
    session: AsyncSession, kind: Literal["scan", "variants", "webhook"], file_id: uuid.UUID
) -> None:
    """Enqueue a file's scan or variants job, or a webhook delivery, once ``session`` has committed.

    The job must find the confirmed row, so it cannot be enqueued before the
    commit, and the code that confirms does not own the commit: the request
    scope (``deps.get_session``) calls ``flush_after_commit`` after it.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append((kind, file_id))


async def flush_after_commit(session: AsyncSession, jobs: JobQueue) -> None:
    """Enqueue what the committed session deferred. A failure is logged: the
    row says the work is pending, and its reconciler (scans) or a later run
    (variants) takes it up."""
    deferred = session.info.pop(_COMMITTED, []) + session.info.pop(_AFTER_COMMIT, [])
    for kind, file_id in deferred:
        enqueue = {
            "scan": jobs.enqueue_scan,
            "variants": jobs.enqueue_variants,
            "webhook": jobs.enqueue_webhook,
        }[kind]
        try:
            await enqueue(file_id)
        except Exception:
            logger.exception("could not enqueue the %s job of %s", kind, file_id)


def forget_after_commit(session: AsyncSession) -> None:
    """After a rollback: the files the jobs name were never committed (except those kept)."""
    session.info.pop(_AFTER_COMMIT, None)


def keep_committed(session: AsyncSession) -> None:
    """Keep the jobs deferred so far through a rollback: ``session`` has just committed
    their rows, and the request goes on to answer an error (a rejection's 422)."""
    session.info.setdefault(_COMMITTED, []).extend(session.info.pop(_AFTER_COMMIT, []))


def retry_after(job_try: int) -> Retry:
    """arq's Retry for a transient failure of try ``job_try``: a short, growing backoff."""
    return Retry(defer=job_try * RETRY_BACKOFF_SECONDS)


class JobQueue:
    async def enqueue_import(self, job_id: uuid.UUID) -> None:
        raise NotImplementedError

    async def is_queued_or_running(self, job_id: uuid.UUID) -> bool:
        raise NotImplementedError

    async def enqueue_scan(self, upload_id: uuid.UUID) -> None:
        raise NotImplementedError

    async def enqueue_variants(self, file_id: uuid.UUID) -> None:
        raise NotImplementedError

    async def enqueue_webhook(self, delivery_id: uuid.UUID) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


class ArqQueue(JobQueue):
    def __init__(self, pool: ArqRedis) -> None:
        self.pool = pool

    async def enqueue_import(self, job_id: uuid.UUID) -> None:
        await self.pool.enqueue_job(IMPORT_FUNCTION, str(job_id), _job_id=import_job_key(job_id))

    async def is_queued_or_running(self, job_id: uuid.UUID) -> bool:
        status = await Job(import_job_key(job_id), self.pool).status()
        return status in (JobStatus.deferred, JobStatus.queued, JobStatus.in_progress)

    async def enqueue_scan(self, upload_id: uuid.UUID) -> None:
        await self.pool.enqueue_job(SCAN_FUNCTION, str(upload_id), _job_id=scan_job_key(upload_id))

    async def enqueue_variants(self, file_id: uuid.UUID) -> None:
        await self.pool.enqueue_job(
            VARIANTS_FUNCTION, str(file_id), _job_id=variants_job_key(file_id)
        )

    async def enqueue_webhook(self, delivery_id: uuid.UUID) -> None:
        await self.pool.enqueue_job(
            WEBHOOK_FUNCTION, str(delivery_id), _job_id=webhook_job_key(delivery_id)
        )


class InProcessQueue(JobQueue):
    """Runs jobs as tasks of this event loop (the zero-config setup).

    Its runner is bound by the code that composes the process (the app's
    lifespan), which knows the job functions; ``resources`` only makes the queue.
    """

    def __init__(self) -> None:
        self._run: ImportRunner | None = None
        self._run_variants: VariantsRunner | None = None
        self._max_tries = 1
        self._scan: ImportRunner | None = None
        self._scan_max_tries = 1
        self._webhook: ImportRunner | None = None
        self._webhook_max_tries = 1
        # Keyed by (kind, id): an import and a scan are different jobs.
        self._tasks: dict[tuple[str, uuid.UUID], asyncio.Task[None]] = {}
        # Variant jobs by file id (a separate id space from import jobs).
        self._variant_tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        # Runs that asked to be tried again (as arq's Worker.jobs_retried).
        self.jobs_retried = 0

    def bind(
        self, run: ImportRunner, *, max_tries: int, run_variants: VariantsRunner | None = None
    ) -> None:
        self._run = run
        self._max_tries = max_tries
        self._run_variants = run_variants

    async def enqueue_variants(self, file_id: uuid.UUID) -> None:
        if self._run_variants is None:
            raise RuntimeError("InProcessQueue.bind() got no variants runner")
        if file_id in self._variant_tasks:
            return
        task = asyncio.create_task(self._tries(self._run_variants, file_id, self._max_tries))
        self._variant_tasks[file_id] = task
        task.add_done_callback(lambda _: self._variant_tasks.pop(file_id, None))

    def bind_scan(self, run: ImportRunner, *, max_tries: int) -> None:
        """The runner of malware scans (by upload id), as ``bind`` for imports."""
        self._scan = run
        self._scan_max_tries = max_tries

    def bind_webhooks(self, run: ImportRunner, *, max_tries: int) -> None:
        """The runner of webhook deliveries (by delivery id), as ``bind`` for imports."""
        self._webhook = run
        self._webhook_max_tries = max_tries

    async def enqueue_webhook(self, delivery_id: uuid.UUID) -> None:
        if self._webhook is None:
            raise RuntimeError("InProcessQueue.bind_webhooks() was not called: no runner")
        self._start(("webhook", delivery_id), self._webhook, self._webhook_max_tries)

    async def enqueue_import(self, job_id: uuid.UUID) -> None:
        if self._run is None:
            raise RuntimeError("InProcessQueue.bind() was not called: no job runner")
        self._start(("import", job_id), self._run, self._max_tries)

    async def enqueue_scan(self, upload_id: uuid.UUID) -> None:
        if self._scan is None:
            raise RuntimeError("InProcessQueue.bind_scan() was not called: no scan runner")
        self._start(("scan", upload_id), self._scan, self._scan_max_tries)

    def _start(self, key: tuple[str, uuid.UUID], run: ImportRunner, max_tries: int) -> None:
        if key in self._tasks:
            return
        task = asyncio.create_task(self._tries(run, key[1], max_tries))
        self._tasks[key] = task
        task.add_done_callback(lambda _: self._tasks.pop(key, None))

    async def _tries(self, run: ImportRunner, job_id: uuid.UUID, max_tries: int) -> None:
        for job_try in range(1, max_tries + 1):
            try:
                await run(job_id, job_try)
                return
            except Retry as retry:
                self.jobs_retried += 1
                if job_try == max_tries:
                    # As arq does; the job's row says why (or the reconciler finds it).
                    logger.error("in-process job %s: max %d tries", job_id, job_try)
                    return
                delay = (retry.defer_score or 0) / 1000
                logger.info("in-process job %s: try %d again in %.1f s", job_id, job_try, delay)
                await asyncio.sleep(delay)
            except Exception:
                logger.exception("in-process job %s failed", job_id)
                return

    async def is_queued_or_running(self, job_id: uuid.UUID) -> bool:
        return ("import", job_id) in self._tasks

    async def wait_idle(self) -> None:
        """Wait for every running job, retries included (tests, shutdown)."""
        while self._tasks or self._variant_tasks:
            tasks = [*self._tasks.values(), *self._variant_tasks.values()]
            await asyncio.gather(*tasks, return_exceptions=True)

    async def aclose(self) -> None:
        tasks = [*self._tasks.values(), *self._variant_tasks.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
