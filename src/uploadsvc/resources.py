"""The long-lived clients of one process, opened and closed together.

The API's lifespan and the worker's startup both use ``open_resources``, so
they talk to the database, storage and Redis the same way. Nothing here
touches the network at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from arq.connections import ArqRedis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from uploadsvc.config import Settings
from uploadsvc.db import create_engine, create_session_factory
from uploadsvc.jobs import ArqQueue, InProcessQueue, JobQueue
from uploadsvc.security import TokenVerifier
from uploadsvc.storage import Storage, open_storage


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    engine: AsyncEngine
    session_factory: async_sessionmaker[AsyncSession]
    storage: Storage
    token_verifier: TokenVerifier
    # None in the zero-config setup: jobs then run in-process.
    redis: ArqRedis | None
    jobs: JobQueue


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        storage = await stack.enter_async_context(open_storage(settings))
        verifier = TokenVerifier(settings)
        stack.push_async_callback(verifier.aclose)
        redis: ArqRedis | None = None
        jobs: JobQueue
        if settings.redis_url:
            # Connects lazily (unlike arq.create_pool): the API starts, and
            # /readyz reports Redis as down, while Redis is unreachable.
            redis = ArqRedis.from_url(settings.redis_url)
            stack.push_async_callback(redis.aclose)
            jobs = ArqQueue(redis)
        else:
            jobs = InProcessQueue()
        stack.push_async_callback(jobs.aclose)
        resources = Resources(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            storage=storage,
            token_verifier=verifier,
            redis=redis,
            jobs=jobs,
        )
        if isinstance(jobs, InProcessQueue):
            # Imported here: the import service needs Resources itself.
            from uploadsvc.services.imports import run_import

            jobs.bind(lambda job_id: run_import(resources, job_id))
        yield resources
