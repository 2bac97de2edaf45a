"""`uploadsvc dev` (no Redis) runs the event imports it accepts, in its own process."""

from __future__ import annotations

import time

import httpx

from tests.openevent_archives import build_zip
from tests.test_dev_server import dev_server  # noqa: F401  (the fixture)

# A generous bound on the import; reaching it is a hang.
HANG_SECONDS = 60


def test_an_import_runs_in_the_dev_server(dev_server: tuple[str, str]) -> None:  # noqa: F811
    base, token = dev_server
    auth = {"Authorization": f"Bearer {token}"}
    archive = build_zip(
        {
            "event": {"name": "Zero config"},
            "speakers": [{"id": 1, "name": "Ada", "sessions": [{"id": 1}]}],
            "sessions": [{"id": 1, "title": "Keynote"}, {"id": 2, "title": "Workshop"}],
        }
    )
    accepted = httpx.post(
        f"{base}/v1/events/import/json",
        files={"file": ("event.zip", archive, "application/zip")},
        headers=auth,
        timeout=30,
    )
    assert accepted.status_code == 202, accepted.text
    task: dict[str, object] = {}
    deadline = time.monotonic() + HANG_SECONDS
    while time.monotonic() < deadline:
        task = httpx.get(f"{base}{accepted.json()['task_url']}", headers=auth, timeout=10).json()
        if task["state"] in ("SUCCESS", "FAILURE"):
            break
        time.sleep(0.2)
    assert task["state"] == "SUCCESS", task
    result = task["result"]
    assert isinstance(result, dict)
    sessions = httpx.get(f"{base}{result['url']}/sessions", headers=auth, timeout=10).json()
    assert sorted(s["title"] for s in sessions["items"]) == ["Keynote", "Workshop"]
