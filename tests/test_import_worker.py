"""Imports on a real arq worker and Redis: enqueued after commit, recovered when Redis forgets."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import func, select

from tests.conftest import Api, make_settings, running_api
from tests.openevent_archives import build_zip
from uploadsvc.job_queue import ArqQueue
from uploadsvc.models.events import Event, ImportJob
from uploadsvc.services.imports import reconcile_imports
from uploadsvc.workers.settings import create_worker

REDIS_BASE = os.environ.get("UPLOADSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# A database of its own, flushed by these tests (another one for a second
# checkout running its suite at the same time).
REDIS_URL = os.environ.get(
    "UPLOADSVC_TEST_REDIS_FLUSHABLE_URL", REDIS_BASE.rsplit("/", 1)[0] + "/13"
)

ARCHIVE = build_zip(
    {
        "event": {"name": "On a worker"},
        "sessions": [{"id": i, "title": f"Talk {i}", "speakers": [i]} for i in range(1, 51)],
        "speakers": [{"id": i, "name": f"Speaker {i}"} for i in range(1, 51)],
    }
)


async def _run_worker_until_idle(settings: Any) -> None:
    worker = create_worker(settings, burst=True, handle_signals=False, poll_delay=0.05)
    try:
        await worker.main()
    finally:
        await worker.close()


async def _post(api: Api) -> str:
    response = await api.app_client.post(
        "/v1/events/import/json",
        files={"file": ("event.zip", ARCHIVE, "application/zip")},
        headers=api.headers(),
    )
    assert response.status_code == 202, response.text
    task_url: str = response.json()["task_url"]
    return task_url


async def _events(api: Api) -> int:
    async with api.resources.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(Event)) or 0)


@pytest.fixture
async def redis_api(tmp_path: Path, postgres_url: str) -> Any:
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    settings = make_settings(
        "pg-local", tmp_path=tmp_path, database_url=postgres_url, redis_url=REDIS_URL
    )
    async with running_api(settings, "pg-local") as api:
        yield api
        async with api.resources.engine.begin() as connection:
            from sqlalchemy import text

            await connection.execute(text("TRUNCATE uploads, import_jobs CASCADE"))
    await redis.flushdb()
    await redis.aclose()


async def test_import_runs_on_an_arq_worker(redis_api: Api) -> None:
    api = redis_api
    assert isinstance(api.resources.jobs, ArqQueue)
    task_url = await _post(api)
    pending = (await api.app_client.get(task_url, headers=api.headers())).json()
    assert pending["state"] == "PENDING"
    await _run_worker_until_idle(api.settings)
    done = (await api.app_client.get(task_url, headers=api.headers())).json()
    assert done["state"] == "SUCCESS", done
    assert done["result"]["counts"]["sessions"] == 50
    assert done["progress"]["stage"] == "done"
    assert await _events(api) == 1


async def test_a_job_lost_with_redis_is_reenqueued_and_done_once(redis_api: Api) -> None:
    api = redis_api
    task_url = await _post(api)
    # Redis forgets everything before any worker saw the job.
    await Redis.from_url(REDIS_URL).flushdb()
    await _run_worker_until_idle(api.settings)
    lost = (await api.app_client.get(task_url, headers=api.headers())).json()
    assert lost["state"] == "PENDING"
    # The reconciler finds it in PostgreSQL and enqueues it again.
    assert await reconcile_imports(api.resources, stale_after=dt.timedelta(0)) == 1
    # Asking twice does not enqueue twice.
    assert await reconcile_imports(api.resources, stale_after=dt.timedelta(0)) == 0
    await _run_worker_until_idle(api.settings)
    done = (await api.app_client.get(task_url, headers=api.headers())).json()
    assert done["state"] == "SUCCESS", done
    assert await _events(api) == 1


async def test_enqueueing_the_same_job_twice_runs_it_once(redis_api: Api) -> None:
    api = redis_api
    task_url = await _post(api)
    job_id = uuid.UUID(task_url.rsplit("/", 1)[1])
    await api.resources.jobs.enqueue_import(job_id)
    await asyncio.gather(_run_worker_until_idle(api.settings), _run_worker_until_idle(api.settings))
    assert await _events(api) == 1


def _big_archive(sessions: int) -> bytes:
    return build_zip(
        {
            "event": {"name": "Killed midway"},
            "tracks": [{"id": t, "name": f"Track {t}"} for t in range(1, 51)],
            "speakers": [
                {"id": s, "name": f"Speaker {s}", "short-biography": "x" * 200}
                for s in range(1, sessions // 2 + 1)
            ],
            "sessions": [
                {
                    "id": n,
                    "title": f"Talk {n}",
                    "long-abstract": "y" * 500,
                    "track": n % 50 + 1,
                    "speakers": [n % (sessions // 2) + 1],
                }
                for n in range(1, sessions + 1)
            ],
        }
    )


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as output:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("uploadsvc")), "worker"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        os.killpg(process.pid, sig)
        process.wait(timeout=20)


async def test_killing_the_worker_midway_ends_with_one_event(
    redis_api: Api, tmp_path: Path
) -> None:
    api = redis_api
    settings = api.settings
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("UPLOADSVC_")},
        "UPLOADSVC_DATABASE_URL": settings.database_url,
        "UPLOADSVC_REDIS_URL": REDIS_URL,
        "UPLOADSVC_LOCAL_STORAGE_DIR": str(settings.local_storage_dir),
        "UPLOADSVC_JWT_SECRET": settings.jwt_secret.get_secret_value()
        if settings.jwt_secret
        else "",
        "UPLOADSVC_SIGNING_SECRET": settings.signing_secret.get_secret_value(),
        # The killed job's arq lease ends 10 + 5 + 10 s after it started (its timeout, the
        # grace an import has past it, arq's margin).
        "UPLOADSVC_JOB_TIMEOUT_SECONDS": "10",
    }
    log = tmp_path / "worker.log"
    response = await api.app_client.post(
        "/v1/events/import/json",
        files={"file": ("event.zip", _big_archive(20_000), "application/zip")},
        headers=api.headers(),
    )
    assert response.status_code == 202, response.text
    task_url = response.json()["task_url"]

    first = _start_worker(env, log)
    try:
        state = "PENDING"
        for _ in range(600):
            state = (await api.app_client.get(task_url, headers=api.headers())).json()["state"]
            if state != "PENDING":
                break
            await asyncio.sleep(0.02)
        assert state == "STARTED", (state, log.read_text())
    finally:
        _stop(first, signal.SIGKILL)

    second = _start_worker(env, log)
    try:
        task: dict[str, Any] = {}
        for _ in range(600):
            task = (await api.app_client.get(task_url, headers=api.headers())).json()
            if task["state"] in ("SUCCESS", "FAILURE"):
                break
            await asyncio.sleep(0.2)
    finally:
        _stop(second)
    # The second worker takes the job over once the first one's lease ends and
    # imports it whole: the killed run left nothing that stops it.
    assert task["state"] == "SUCCESS", (task, log.read_text())
    assert task["result"]["counts"]["sessions"] == 20_000
    assert await _events(api) == 1
    async with api.resources.session_factory() as session:
        job = await session.get(ImportJob, uuid.UUID(task["task_id"]))
    assert job is not None
    assert job.attempts == 2


def test_resources_know_no_import_service(tmp_path: Path) -> None:
    """The in-process queue's runner is bound by the app, not by resources.py:
    opening resources (no Redis) loads neither the import service nor the jobs."""
    probe = textwrap.dedent(
        """
        import asyncio, sys
        from uploadsvc.config import Settings
        from uploadsvc.resources import open_resources

        async def main():
            async with open_resources(Settings(_env_file=None, **settings)):
                loaded = sorted(
                    m for m in sys.modules
                    if m.startswith(("uploadsvc.services.imports", "uploadsvc.workers"))
                )
            print(loaded)

        asyncio.run(main())
        """
    )
    settings = {
        "env": "development",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}",
        "local_storage_dir": str(tmp_path / "storage"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("UPLOADSVC_")}
    loaded = subprocess.run(
        [sys.executable, "-c", f"settings = {settings!r}\n{probe}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout.strip()
    assert loaded == "[]"
