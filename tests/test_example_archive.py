"""`uploadsvc example-archive PATH` writes an archive that imports cleanly through the API."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Api
from tests.devserver import clean_env
from tests.openevent_archives import expected
from tests.support.servers import UPLOADSVC
from uploadsvc.example_archive import build_example_archive, example_files
from uploadsvc.job_queue import InProcessQueue

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local", "pg-s3"], indirect=True)


def _write_example(tmp_path: Path) -> bytes:
    path = tmp_path / "event.zip"
    written = subprocess.run(
        [UPLOADSVC, "example-archive", str(path)],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert written.returncode == 0, written.stderr
    assert str(path) in written.stdout
    return path.read_bytes()


async def _items(api: Api, url: str) -> list[dict[str, Any]]:
    response = await api.app_client.get(url, headers=api.headers())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def _import(api: Api, data: bytes) -> dict[str, Any]:
    """Import ``data`` through the API; the finished task's result."""
    accepted = await api.app_client.post(
        "/v1/events/import/json",
        files={"file": ("event.zip", data, "application/zip")},
        headers=api.headers(),
    )
    assert accepted.status_code == 202, accepted.text
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    await queue.wait_idle()
    task = (await api.app_client.get(accepted.json()["task_url"], headers=api.headers())).json()
    assert task["state"] == "SUCCESS", task
    result: dict[str, Any] = task["result"]
    return result


async def test_the_example_archive_imports_with_its_media_and_no_warnings(
    api: Api, tmp_path: Path
) -> None:
    data = _write_example(tmp_path)
    want = expected(data)
    result = await _import(api, data)
    assert result["event_name"] == want["event_name"]
    assert result["warnings"] == []

    event_id = result["id"]
    event = (await api.app_client.get(f"/v1/events/{event_id}", headers=api.headers())).json()
    for kind, count in want["counts"].items():
        assert event["counts"][kind] == count, kind
    assert want["counts"]["sessions"] >= 3
    assert want["counts"]["speakers"] >= 2
    # Its media are stored under the Open Event key scheme.
    assert event["logo_key"] == f"events/{event_id}/logo"
    speakers = await _items(api, f"/v1/events/{event_id}/speakers")
    assert sorted(s["name"] for s in speakers) == want["speaker_names"]
    assert all(s["photo_key"] == f"events/{event_id}/speakers/{s['id']}/photo" for s in speakers)
    sponsors = await _items(api, f"/v1/events/{event_id}/sponsors")
    assert [s["logo_key"] is not None for s in sponsors] == [True]
    sessions = await _items(api, f"/v1/events/{event_id}/sessions")
    [with_slides] = [s for s in sessions if s["slides_key"]]
    assert with_slides["slides_key"] == f"events/{event_id}/sessions/{with_slides['id']}/slides"
    links = {
        s["title"]: tuple(
            (s[kind] or {}).get("name") for kind in ("track", "microlocation", "session_type")
        )
        for s in sessions
    }
    assert links == want["session_links"]
    for key in [event["logo_key"], with_slides["slides_key"], *(s["photo_key"] for s in speakers)]:
        assert await api.object_exists(key), key


async def test_each_imported_medium_has_a_url_that_downloads_its_bytes(api: Api) -> None:
    files, media = example_files()
    event_id = (await _import(api, build_example_archive()))["id"]
    base = f"/v1/events/{event_id}"
    event = (await api.app_client.get(base, headers=api.headers())).json()
    speakers = {s["name"]: s for s in await _items(api, f"{base}/speakers")}
    [sponsor] = await _items(api, f"{base}/sponsors")
    sessions = {s["title"]: s for s in await _items(api, f"{base}/sessions")}
    # Each body that holds a medium, its URL field, and the archive's path of it.
    served = [
        (event["logo_url"], files["event"]["logo-url"]),
        (sponsor["logo_url"], files["sponsors"][0]["logo-url"]),
    ]
    served += [(speakers[s["name"]]["photo_url"], s["photo-url"]) for s in files["speakers"]]
    served += [
        (sessions[s["title"]]["slides_url"], s["slides-url"])
        for s in files["sessions"]
        if "slides-url" in s
    ]
    assert len(served) == 5
    for url, path in served:
        assert url is not None, path
        # A signed URL, not a route of ours: no token, as an <img> would fetch it.
        response = await api.app_client.get(url)
        assert response.status_code == 200, (path, response.text)
        assert response.content == media[path.lstrip("/")], path
        expected_type = "application/pdf" if path.endswith(".pdf") else "image/png"
        assert response.headers["content-type"] == expected_type
    # A session without slides has no URL for them.
    assert sessions["Magic bytes and why they matter"]["slides_url"] is None
