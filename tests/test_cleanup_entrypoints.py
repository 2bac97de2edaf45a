"""The cleanup job is reachable from the CLI, the arq worker and its schedule."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.conftest import make_settings, running_api
from uploadsvc.cli import parse_duration, run_migrations
from uploadsvc.models import CleanupRun
from uploadsvc.workers import cleanup_job, cleanup_schedule, create_worker

REDIS_URL = os.environ.get("UPLOADSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


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
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("UPLOADSVC_")},
        "UPLOADSVC_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}",
        "UPLOADSVC_LOCAL_STORAGE_DIR": str(storage),
    }
    uploadsvc = str(Path(sys.executable).with_name("uploadsvc"))
    subprocess.run([uploadsvc, "migrate"], env=env, cwd=tmp_path, check=True, capture_output=True)
    dry = subprocess.run(
        [uploadsvc, "cleanup", "--dry-run", "--older-than", "0s"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "would delete 1" in dry.stdout
    assert orphan.exists()
    real = subprocess.run(
        [uploadsvc, "cleanup", "--older-than", "0s"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "deleted 1" in real.stdout
    assert not orphan.exists()


async def test_worker_job_runs_a_recorded_cleanup(tmp_path: Path) -> None:
    settings = make_settings("sqlite-local", tmp_path=tmp_path, redis_url=REDIS_URL)
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
