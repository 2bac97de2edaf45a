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
from uploadsvc.job_queue import ArqQueue, InProcessQueue, JobQueue
from uploadsvc.rate_limits import RateLimiter
from uploadsvc.repository.multipart_ledger import MultipartLedger
from uploadsvc.security import TokenVerifier
from uploadsvc.storage import Storage, open_storage
from uploadsvc.webhook_sender import WebhookSender


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
    rate_limiter: RateLimiter
    # None without UPLOADSVC_WEBHOOK_URL.
    webhook_sender: WebhookSender | None


def _multipart_ledger(
    settings: Settings, session_factory: async_sessionmaker[AsyncSession]
) -> MultipartLedger | None:
    """The ledger of S3 multipart uploads, where one can be kept.

    SQLite holds its one write lock for a whole request (``BEGIN IMMEDIATE``,
    see db.py), so a ledger write in a transaction of its own, made during
    that request, would wait for the request it is part of. With SQLite, and
    with the local backend (whose incomplete uploads are folders), cleanup
    lists incomplete uploads instead.
    """
    if settings.storage_backend != "s3" or settings.uses_sqlite:
        return None
    return MultipartLedger(session_factory)


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        session_factory = create_session_factory(engine)
        storage = await stack.enter_async_context(
            open_storage(settings, tracker=_multipart_ledger(settings, session_factory))
        )
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
            # Its runner is bound by whoever composes the process (the app's
            # lifespan): this module knows no job and no service.
            jobs = InProcessQueue()
        stack.push_async_callback(jobs.aclose)
        rate_limiter = RateLimiter(settings)
        stack.push_async_callback(rate_limiter.aclose)
        webhook_sender = WebhookSender.from_settings(settings)
        if webhook_sender is not None:
            stack.push_async_callback(webhook_sender.aclose)
        resources = Resources(
            settings=settings,
            engine=engine,
            session_factory=session_factory,
            storage=storage,
            token_verifier=verifier,
            redis=redis,
            jobs=jobs,
            rate_limiter=rate_limiter,
            webhook_sender=webhook_sender,
        )
        yield resources
