"""`uploadsvc serve` on SIGTERM: /readyz answers 503 while requests still go on, then it stops."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.service_process import served

DRAIN_SECONDS = 1.5
# A hang bound, not an expectation.
EXIT_BOUND_SECONDS = 30.0


def test_readyz_is_503_during_the_drain_and_the_process_then_exits(tmp_path: Path) -> None:
    with served(tmp_path, shutdown_drain_seconds=str(DRAIN_SECONDS)) as (service, _):
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
