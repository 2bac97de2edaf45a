"""`uploadsvc worker` outlives a Redis outage and takes jobs again once Redis is back.

It runs against a redis-server of this test's own on a free port, which the
test stops and starts again on the same port; the machine's Redis is left
alone (docs/api.md, "Outages").
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from arq.connections import ArqRedis
from arq.jobs import Job, JobStatus

from tests.support.servers import (
    UPLOADSVC,
    ServerProcess,
    free_loopback_port,
    run_cli,
    spawn,
    uploadsvc_env,
)

# The outage the worker must live through, and a generous bound for a job to run.
OUTAGE_SECONDS = 12.0
JOB_BOUND_SECONDS = 60.0

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def start_redis(port: int, workdir: Path) -> ServerProcess:
    log_path = workdir / f"redis-{port}-{uuid.uuid4().hex[:6]}.log"
    process = spawn(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        env={},
        cwd=workdir,
        log_path=log_path,
    )
    server = ServerProcess("redis-server", port, process, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, check=False
        )
        if ping.stdout.strip() == "PONG":
            return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"redis-server did not start:\n{server.log_tail()}")


async def test_worker_survives_redis_outage_and_runs_jobs_after(tmp_path: Path) -> None:
    port = free_loopback_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    env = uploadsvc_env(
        {
            "env": "development",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'uploadsvc.db'}",
            "local_storage_dir": str(tmp_path / "storage"),
            "redis_url": redis_url,
        }
    )
    run_cli(["migrate"], env=env, cwd=tmp_path)
    redis = start_redis(port, tmp_path)
    worker_log = tmp_path / "worker.log"
    worker = ServerProcess(
        "uploadsvc worker",
        port,
        spawn([UPLOADSVC, "worker"], env=env, cwd=tmp_path, log_path=worker_log),
        worker_log,
    )
    try:
        await asyncio.sleep(2)  # connected and polling
        assert worker.process.poll() is None, worker.log_tail()

        redis.stop()
        await asyncio.sleep(OUTAGE_SECONDS)
        assert worker.process.poll() is None, f"the worker exited:\n{worker.log_tail()}"

        redis = start_redis(port, tmp_path)
        pool = ArqRedis.from_url(redis_url)
        try:
            # A job for a function the worker does not have: arq records its
            # failure as a result, which says the worker took it off the queue.
            job = await pool.enqueue_job("no_such_function", _job_id=uuid.uuid4().hex)
            assert job is not None
            assert await _completes(job), f"the job never ran:\n{worker.log_tail()}"
        finally:
            await pool.aclose()
        assert worker.process.poll() is None, worker.log_tail()
    finally:
        worker.stop()
        redis.stop()
    assert worker.process.returncode == 0, worker.log_tail()


async def _completes(job: Job) -> bool:
    deadline = time.monotonic() + JOB_BOUND_SECONDS
    while time.monotonic() < deadline:
        if await job.status() == JobStatus.complete:
            return True
        await asyncio.sleep(0.2)
    return False
