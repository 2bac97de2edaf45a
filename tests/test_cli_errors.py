"""The ``uploadsvc`` command tells an operator what failed in one line, and its version.

Each command runs as a process in an empty folder (no .env is read), on a
database that no migration has touched.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import DEFAULT_PG_URL
from tests.support.servers import run_cli, run_cli_status, uploadsvc_env


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    output = run_cli(["--version"], env=uploadsvc_env(), cwd=tmp_path)
    assert output.strip() == f"uploadsvc {importlib.metadata.version('uploadsvc')}"


def assert_one_line_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"uploadsvc {command}: "), lines[0]
    return lines[0]


def test_cleanup_before_any_migration_says_to_migrate(tmp_path: Path) -> None:
    env = uploadsvc_env(
        {
            "env": "development",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'never-migrated.db'}",
            "local_storage_dir": str(tmp_path / "storage"),
        }
    )
    line = assert_one_line_error(run_cli_status(["cleanup"], env=env, cwd=tmp_path), "cleanup")
    assert "no such table" in line
    assert "run `uploadsvc migrate` first" in line


@pytest.fixture
async def unmigrated_postgres() -> AsyncIterator[str]:
    admin_url = os.environ.get("UPLOADSVC_TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"uploadsvc_unmigrated_{uuid.uuid4().hex[:8]}"
    engine = create_async_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(f'CREATE DATABASE "{name}"'))
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
        async with engine.connect() as connection:
            await connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


def test_cleanup_on_an_unmigrated_postgres_database_says_to_migrate(
    unmigrated_postgres: str, tmp_path: Path
) -> None:
    env = uploadsvc_env(
        {
            "env": "development",
            "database_url": unmigrated_postgres,
            "local_storage_dir": str(tmp_path / "storage"),
        }
    )
    line = assert_one_line_error(run_cli_status(["cleanup"], env=env, cwd=tmp_path), "cleanup")
    assert "does not exist" in line
    assert "run `uploadsvc migrate` first" in line
