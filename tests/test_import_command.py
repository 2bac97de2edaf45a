"""`uploadsvc import ARCHIVE --owner USER`: an operator's import, its result as the API shows it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.conftest import make_settings, running_api
from tests.service_process import sqlite_local_values
from tests.support.files import zip_archive
from tests.support.servers import run_cli_status, uploadsvc_env
from uploadsvc.cli import run_migrations
from uploadsvc.example_archive import EVENT_NAME, build_example_archive

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"])


async def test_an_archive_is_imported_for_its_owner_and_a_bad_one_fails_clearly(
    tmp_path: Path, backend: str
) -> None:
    settings = make_settings(backend, tmp_path=tmp_path)
    await asyncio.to_thread(run_migrations, settings)
    env = uploadsvc_env(sqlite_local_values(tmp_path, 8000))
    good, bad = tmp_path / "event.zip", tmp_path / "not-an-event.zip"
    good.write_bytes(build_example_archive())
    bad.write_bytes(zip_archive())

    # Both at once: each is a process start, and SQLite takes their writes in turn.
    imported, failed = await asyncio.gather(
        *(
            asyncio.to_thread(
                run_cli_status, ["import", str(path), "--owner", "alice"], env=env, cwd=tmp_path
            )
            for path in (good, bad)
        )
    )

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith(f"imported {EVENT_NAME!r} as /v1/events/")
    assert "3 sessions, 2 speakers" in imported.stdout
    assert "Traceback" not in imported.stderr + failed.stderr
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines()[-1].startswith("import failed (task ")
    async with running_api(settings) as api:
        listed = await api.app_client.get("/v1/import-jobs", headers=api.headers("alice"))
        url = imported.stdout.split(" as ", 1)[1].split(" ", 1)[0]
        event = await api.app_client.get(url, headers=api.headers("alice"))
    assert sorted(item["state"] for item in listed.json()["items"]) == ["FAILURE", "SUCCESS"]
    assert event.status_code == 200
    assert event.json()["name"] == EVENT_NAME
