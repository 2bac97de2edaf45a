"""Readiness: does every dependency answer right now?"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from uploadsvc.repository import health as repository
from uploadsvc.resources import Resources
from uploadsvc.scanner import ClamdClient
from uploadsvc.schemas.health import Readiness
from uploadsvc.services import scanning

logger = logging.getLogger(__name__)

# A readiness probe that hangs is worse than one that says "down".
CHECK_TIMEOUT_SECONDS = 3.0


async def check_readiness(resources: Resources, *, shutting_down: bool = False) -> Readiness:
    if shutting_down:
        # The load balancer should send nothing new; the dependencies do not matter.
        return Readiness(status="shutting_down", checks={})

    async def database() -> None:
        async with resources.engine.connect() as connection:
            await repository.ping(connection)

    async def redis() -> None:
        assert resources.redis is not None
        await resources.redis.ping()

    checks: dict[str, Callable[[], Awaitable[object]]] = {
        "database": database,
        "storage": resources.storage.check_ready,
    }
    if resources.redis is not None:
        checks["redis"] = redis
    if scanning.is_on(resources.settings):
        checks["clamd"] = ClamdClient.from_settings(resources.settings).ping
    results = await asyncio.gather(*(_run(name, check) for name, check in checks.items()))
    answers = dict(results)
    healthy = all(answer == "ok" for answer in answers.values())
    return Readiness(status="ok" if healthy else "unavailable", checks=answers)


async def _run(name: str, check: Callable[[], Awaitable[object]]) -> tuple[str, str]:
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            await check()
    except Exception as exc:
        # The reason goes to the log; the response only says what is down.
        logger.warning("readiness: %s is down: %s", name, type(exc).__name__)
        return name, "unavailable"
    return name, "ok"
