"""The cleanup job is reachable from the CLI, the arq worker and its schedule."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tests.conftest import (
    TEST_JWT_SECRET,
    TEST_REDIS_URL,
    empty_shared_database,
    make_settings,
    running_api,
)
from tests.support.files import MiB
from tests.support.localstack import LocalStackServer
from tests.support.servers import free_loopback_port, run_cli, start_uploadsvc, uploadsvc_env
from uploadsvc.cli import parse_duration, run_migrations
from uploadsvc.config import Settings
from uploadsvc.models.cleanup import CleanupRun
from uploadsvc.models.multipart_ledger import OpenMultipartUpload
from uploadsvc.security import mint_token
from uploadsvc.storage import open_storage
from uploadsvc.workers.jobs import cleanup_job
from uploadsvc.workers.settings import cleanup_schedule, create_worker

T = TypeVar("T")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90m", 5400), ("24h", 86400), ("7d", 604800), ("30", 30), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize(
    ("every", "minute", "hour"),
    [(15, {0, 15, 30, 45}, None), (60, {0}, set(range(24))), (360, {0}, {0, 6, 12, 18})],
)
def test_schedule(tmp_path: Path, every: int, minute: set[int], hour: set[int] | None) -> None:
    settings = make_settings("sqlite-local", tmp_path=tmp_path, cleanup_every_minutes=every)
    assert cleanup_schedule(settings) == (minute, hour)


def test_cli_dry_run_reports_without_deleting(tmp_path: Path) -> None:
    storage = tmp_path / "storage"
    orphan = storage / "objects" / "uploads" / "x" / "2026" / "01" / "01" / "orphan.txt"
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"left behind\n")
    env = uploadsvc_env(
        {
            "env": "development",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
            "local_storage_dir": str(storage),
        }
    )
    run_cli(["migrate"], env=env, cwd=tmp_path)
    dry = run_cli(["cleanup", "--dry-run", "--older-than", "0s"], env=env, cwd=tmp_path)
    assert "would delete 1" in dry
    assert orphan.exists()
    real = run_cli(["cleanup", "--older-than", "0s", "--all-incomplete"], env=env, cwd=tmp_path)
    assert "deleted 1" in real
    assert not orphan.exists()


async def test_worker_job_runs_a_recorded_cleanup(tmp_path: Path) -> None:
    settings = make_settings("sqlite-local", tmp_path=tmp_path, redis_url=TEST_REDIS_URL)
    await asyncio.to_thread(run_migrations, settings)
    worker = create_worker(
        settings, burst=True, handle_signals=False, queue_name=f"test:{uuid.uuid4()}"
    )
    assert [job.name for job in worker.cron_jobs] == ["cron:cleanup_job", "cron:reconcile_job"]
    async with running_api(settings) as api:
        result = await cleanup_job({"resources": api.resources})
        assert result["outcome"] == "done"
        async with api.resources.session_factory() as session:
            runs = (await session.scalars(select(CleanupRun))).all()
    assert [run.outcome for run in runs] == ["done"]
    await worker.close()


async def test_a_direct_upload_cut_off_by_a_crash_is_aborted_by_the_next_cleanup(
    postgres_url: str, localstack: LocalStackServer, tmp_path: Path
) -> None:
    """A real ``uploadsvc serve`` is killed (SIGKILL) in the middle of streaming
    a large direct upload to S3 in parts: nothing aborts the multipart upload
    there. The ledger row written before it started leads the next
    ``uploadsvc cleanup`` to it, without listing the bucket's uploads."""
    values: dict[str, Any] = {
        "env": "development",
        "database_url": postgres_url,
        "storage_backend": "s3",
        "s3_endpoint_url": localstack.endpoint_url,
        "s3_bucket": f"uploadsvc-crash-{uuid.uuid4().hex[:12]}",
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
        "s3_addressing_style": "path",
        "jwt_secret": TEST_JWT_SECRET,
    }
    env = uploadsvc_env(values)
    settings = Settings(_env_file=None, **values)
    engine = create_async_engine(postgres_url)
    run_cli(["storage", "init"], env=env, cwd=tmp_path)
    service = start_uploadsvc("serve", port=free_loopback_port(), env=env, workdir=tmp_path)
    try:
        async with open_storage(settings) as storage:
            # Two 8 MiB parts of a 30 MiB body, then the server dies.
            reader, writer = await asyncio.open_connection("127.0.0.1", service.port)
            token = mint_token(settings, sub="alice")
            writer.write(
                b"PUT /v1/uploads/direct?filename=big.txt HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nContent-Type: text/plain\r\n"
                + f"Authorization: Bearer {token}\r\nContent-Length: {30 * MiB}\r\n\r\n".encode()
            )
            writer.write(b"crash test line\n" * (17 * MiB // 16))
            await writer.drain()
            keys = await _eventually(lambda: _open_multipart_keys(engine))
            assert len(keys) == 1, keys
            assert keys[0].startswith("uploads/alice/")
            left = await _eventually(lambda: storage.list_incomplete_uploads(""))
            assert [upload.key for upload in left] == keys
            service.kill()
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            assert not await reader.read()  # the connection died with the server

            ran = run_cli(["cleanup", "--older-than", "0s"], env=env, cwd=tmp_path)
            assert "aborted 1 unfinished uploads" in ran, ran
            assert await storage.list_incomplete_uploads("") == []
            assert await _open_multipart_keys(engine) == []
    finally:
        service.stop()
        async with engine.begin() as connection:
            await empty_shared_database(connection)
        await engine.dispose()


async def _open_multipart_keys(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list(await connection.scalars(select(OpenMultipartUpload.key)))


async def _eventually(probe: Callable[[], Awaitable[list[T]]]) -> list[T]:
    """What ``probe`` returns once it is not empty (within 30 s)."""
    for _ in range(300):
        if found := await probe():
            return found
        await asyncio.sleep(0.1)
    raise AssertionError("nothing showed up within 30 s")
