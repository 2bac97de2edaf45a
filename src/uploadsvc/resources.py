"""The long-lived clients of one process, opened and closed together.

The API's lifespan and the worker's startup both use ``open_resources``, so
they talk to the database, storage and Redis the same way. Nothing here
touches the network at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from uploadsvc.config import Settings
from uploadsvc.db import create_engine, create_session_factory
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
    redis: Redis | None


@contextlib.asynccontextmanager
async def open_resources(settings: Settings) -> AsyncIterator[Resources]:
    async with contextlib.AsyncExitStack() as stack:
        engine = create_engine(settings)
        stack.push_async_callback(engine.dispose)
        storage = await stack.enter_async_context(open_storage(settings))
        verifier = TokenVerifier(settings)
        stack.push_async_callback(verifier.aclose)
        redis: Redis | None = None
        if settings.redis_url:
            redis = Redis.from_url(settings.redis_url)
            stack.push_async_callback(redis.aclose)
        yield Resources(
            settings=settings,
            engine=engine,
            session_factory=create_session_factory(engine),
            storage=storage,
            token_verifier=verifier,
            redis=redis,
        )
