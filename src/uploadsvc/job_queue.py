"""Where background jobs go: arq on Redis, or this process when there is no Redis.

Both queues take the same job, by id, with the same job function, so the
task URL a client polls behaves the same in ``make dev`` and in production.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

logger = logging.getLogger(__name__)

IMPORT_FUNCTION = "import_event"


def import_job_key(job_id: uuid.UUID) -> str:
    """The arq job id of an import: fixed, so enqueueing twice runs it once."""
    return f"import:{job_id}"


class JobQueue:
    async def enqueue_import(self, job_id: uuid.UUID) -> None:
        raise NotImplementedError

    async def is_queued_or_running(self, job_id: uuid.UUID) -> bool:
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


class InProcessQueue(JobQueue):
    """Runs jobs as tasks of this event loop (the zero-config setup)."""

    def __init__(self) -> None:
        self._run: Callable[[uuid.UUID], Awaitable[None]] | None = None
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}

    def bind(self, run: Callable[[uuid.UUID], Awaitable[None]]) -> None:
        self._run = run

    async def enqueue_import(self, job_id: uuid.UUID) -> None:
        assert self._run is not None, "InProcessQueue.bind() was not called"
        if job_id in self._tasks:
            return
        task = asyncio.create_task(self._guarded(job_id))
        self._tasks[job_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(job_id, None))

    async def _guarded(self, job_id: uuid.UUID) -> None:
        assert self._run is not None
        try:
            await self._run(job_id)
        except Exception:
            # arq would retry; here the reconciler picks the job up again.
            logger.exception("in-process import %s failed", job_id)

    async def is_queued_or_running(self, job_id: uuid.UUID) -> bool:
        return job_id in self._tasks

    async def wait_idle(self) -> None:
        """Wait for every running job (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
