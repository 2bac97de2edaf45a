"""Per-user rate limits by route class (docs/api.md, "Rate limits"), on the `limits` library.

The counters live in Redis when ``UPLOADSVC_REDIS_URL`` is set, so a limit
holds across every replica and ``serve --workers N`` child; otherwise in
this process's memory (``uploadsvc dev``, a single process). The sliding
window counter costs two keys per user and class and one script call per
request.

Redis being down must not take the API down with it: a limit that cannot
be checked lets the request through (fail open) and says so in the log,
at most once a minute, because the limits protect capacity, not data.
"""

from __future__ import annotations

import enum
import logging
import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError
from redis.asyncio import ConnectionPool

from uploadsvc import metrics
from uploadsvc.config import Settings

logger = logging.getLogger(__name__)

# A Redis that does not answer costs a request this much, at most, before it
# goes through unlimited; a refused connection costs nothing.
REDIS_TIMEOUT_SECONDS = 0.25
_FAILURE_LOG_EVERY_SECONDS = 60.0


class RouteClass(enum.StrEnum):
    UPLOAD_URLS = "upload_urls"
    DIRECT_UPLOADS = "direct_uploads"
    IMPORTS = "imports"


def parse_limits(text: str) -> list[RateLimitItem]:
    """``"10/second;500/hour"`` as items; empty means no limit."""
    return parse_many(text) if text.strip() else []


@dataclass(frozen=True, slots=True)
class Decision:
    """One request's hit: allowed or not, and what the RateLimit headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int

    def headers(self) -> dict[str, str]:
        values = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            values["Retry-After"] = str(self.reset_seconds)
        return values


class RateLimiter:
    """The limits of every route class, checked against one storage."""

    def __init__(self, settings: Settings) -> None:
        self._storage: Storage
        # Our own pool, so that the lifespan closes what it opened.
        self._pool: ConnectionPool | None = None
        if settings.redis_url:
            self._pool = ConnectionPool.from_url(
                settings.redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._storage = RedisStorage(
                "async+" + settings.redis_url,
                wrap_exceptions=True,
                implementation="redispy",
                key_prefix="uploadsvc-ratelimit",
                connection_pool=self._pool,  # type: ignore[arg-type]  # passed on to redis-py
            )
        else:
            self._storage = MemoryStorage()
        self._strategy = SlidingWindowCounterRateLimiter(self._storage)
        self._limits = {
            RouteClass.UPLOAD_URLS: parse_limits(settings.rate_limit_upload_urls),
            RouteClass.DIRECT_UPLOADS: parse_limits(settings.rate_limit_direct_uploads),
            RouteClass.IMPORTS: parse_limits(settings.rate_limit_imports),
        }
        self._last_failure_log = -math.inf

    async def hit(self, route_class: RouteClass, user_id: str) -> Decision | None:
        """Count one request of ``user_id``; None without a limit, or when its storage failed."""
        decisions: list[Decision] = []
        try:
            for item in self._limits[route_class]:
                allowed = await self._strategy.hit(item, route_class.value, user_id)
                stats = await self._strategy.get_window_stats(item, route_class.value, user_id)
                reset = max(1, math.ceil(stats.reset_time - time.time()))
                decisions.append(Decision(allowed, item.amount, stats.remaining, reset))
        except (StorageError, OSError, TimeoutError) as exc:
            metrics.rate_limit_unchecked()
            self._log_failure(exc)
            return None
        if not decisions:
            return None
        refused = [decision for decision in decisions if not decision.allowed]
        if refused:
            metrics.rate_limited(route_class=route_class.value)
            return max(refused, key=lambda decision: decision.reset_seconds)
        return min(decisions, key=lambda decision: decision.remaining)

    def _log_failure(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._last_failure_log >= _FAILURE_LOG_EVERY_SECONDS:
            self._last_failure_log = now
            logger.warning("rate limits not enforced: their storage failed (%r)", exc)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
