"""`uploadsvc serve` on SIGTERM: /readyz answers 503 while requests still go on, then it stops."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from tests.conftest import make_settings
from tests.service_process import sqlite_local_values
from tests.support.servers import free_loopback_port, start_uploadsvc, uploadsvc_env
from uploadsvc.cli import run_migrations
from uploadsvc.config import Settings
from uploadsvc.storage import open_storage

DRAIN_SECONDS = 1.5
# A hang bound, not an expectation.
EXIT_BOUND_SECONDS = 30.0


async def _prepare_storage(settings: Settings) -> None:
    async with open_storage(settings) as storage:
        await storage.initialize(cors_origins=[])


def test_readyz_is_503_during_the_drain_and_the_process_then_exits(tmp_path: Path) -> None:
    # Prepared in this process (the commands would cost a start each).
    settings = make_settings("sqlite-local", tmp_path=tmp_path)
    run_migrations(settings)
    asyncio.run(_prepare_storage(settings))
    port = free_loopback_port()
    values = sqlite_local_values(tmp_path, port, shutdown_drain_seconds=str(DRAIN_SECONDS))
    service = start_uploadsvc("serve", port=port, env=uploadsvc_env(values), workdir=tmp_path)
    try:
        with httpx.Client(base_url=service.base_url, timeout=5) as client:
            assert client.get("/readyz").status_code == 200

            os.kill(service.process.pid, signal.SIGTERM)
            draining = client.get("/readyz")
            # Still serving everything else while the load balancer notices.
            alive = client.get("/healthz")

        assert (draining.status_code, draining.json()["status"]) == (503, "shutting_down")
        assert alive.status_code == 200
        deadline = time.monotonic() + EXIT_BOUND_SECONDS
        while service.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert service.process.poll() is not None, service.log_tail()
    finally:
        service.stop()
