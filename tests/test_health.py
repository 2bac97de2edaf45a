"""Readiness names what is down."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.conftest import TEST_REDIS_URL, make_settings, running_api
from tests.support.servers import free_loopback_port
from uploadsvc.cli import run_migrations


async def _migrated(tmp_path: Path, **overrides: str) -> running_api:
    settings = make_settings("sqlite-local", tmp_path=tmp_path, **overrides)
    await asyncio.to_thread(run_migrations, settings)
    return running_api(settings)


async def test_readiness_checks_redis_when_configured(tmp_path: Path) -> None:
    async with await _migrated(tmp_path, redis_url=TEST_REDIS_URL) as api:
        ready = await api.app_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "storage": "ok", "redis": "ok"}


async def test_readiness_is_503_naming_redis_when_it_is_down(tmp_path: Path) -> None:
    down = f"redis://127.0.0.1:{free_loopback_port()}/0"
    async with await _migrated(tmp_path, redis_url=down) as api:
        ready = await api.app_client.get("/readyz")
        alive = await api.app_client.get("/healthz")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "storage": "ok", "redis": "unavailable"},
    }
    assert alive.status_code == 200
