"""``Idempotency-Key``: a retry gets the first answer, never a second file or import job.

On PostgreSQL and S3. httpx picks a new multipart boundary for every
request, as a client rebuilding its retry would, so these also show that
the boundary is not part of a request's identity.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import func, select, text

from tests import samples
from tests.conftest import Api
from uploadsvc.models.events import ImportJob
from uploadsvc.services.cleanup import run_cleanup

HOUR = dt.timedelta(hours=1)

pytestmark = pytest.mark.parametrize("backend", ["pg-s3"])

TEXT = {"file": ("notes.txt", b"hello, once\n", "text/plain")}
# Built once: a zip records the time, so two builds a second apart differ.
ARCHIVE = samples.zip_archive()
OTHER_TEXT = {"file": ("notes.txt", b"hello, twice\n", "text/plain")}


async def _import_jobs(api: Api) -> int:
    async with api.resources.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(ImportJob)) or 0)


async def _created(api: Api) -> int:
    """Files and import jobs made so far (an archive import makes one of each)."""
    return await api.row_count() + await _import_jobs(api)


async def _expire_keys(api: Api) -> None:
    async with api.resources.engine.begin() as connection:
        await connection.execute(
            text("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
        )


async def _confirmed_archive(api: Api) -> str:
    data = samples.zip_archive()
    grant = await api.grant(
        data, filename="e.zip", content_type="application/zip", purpose="event-import"
    )
    assert (await api.put(grant, data)).status_code == 200
    assert (await api.confirm(grant["file_key"])).status_code == 200
    return str(grant["file_key"])


async def _send(
    api: Api, route: str, key: str, *, other: bool = False, file_key: str = ""
) -> httpx.Response:
    headers = {**api.headers(), "Idempotency-Key": key}
    if route == "PUT /v1/uploads/direct":
        body = b"hello, twice\n" if other else b"hello, once\n"
        return await api.app_client.put(
            "/v1/uploads/direct",
            params={"filename": "notes.txt"},
            content=body,
            headers={**headers, "Content-Type": "text/plain"},
        )
    if route == "POST /v1/events/import":
        return await api.app_client.post(
            "/v1/events/import", json={"file_key": file_key}, headers=headers
        )
    path = route.split(" ", 1)[1]
    if path == "/v1/events/import/json":
        archive = ARCHIVE + (b"\0" if other else b"")
        files = {"file": ("event.zip", archive, "application/zip")}
    else:
        files = OTHER_TEXT if other else TEXT
    return await api.app_client.post(path, files=files, headers=headers)


FORM_ROUTES = [
    "POST /v1/uploads/direct",
    "PUT /v1/uploads/direct",
    "POST /v1/upload/file",
    "POST /v1/events/import/json",
]


@pytest.mark.parametrize("route", [*FORM_ROUTES, "POST /v1/events/import"])
async def test_a_retry_with_the_same_key_and_body_gets_the_first_answer(
    api: Api, route: str
) -> None:
    file_key = await _confirmed_archive(api) if route.endswith("/import") else ""
    before = await _created(api)
    first = await _send(api, route, "retry-1", file_key=file_key)
    assert first.status_code in (200, 201, 202), first.text
    made = await _created(api)
    assert made > before
    again = await _send(api, route, '"retry-1"', file_key=file_key)  # the draft's sf-string form
    assert again.status_code == first.status_code
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await _created(api) == made


@pytest.mark.parametrize("route", FORM_ROUTES)
async def test_the_same_key_with_another_body_is_a_422(api: Api, route: str) -> None:
    first = await _send(api, route, "reused")
    assert first.status_code in (200, 201, 202), first.text
    made = await _created(api)
    other = await _send(api, route, "reused", other=True)
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    assert await _created(api) == made


async def test_a_key_whose_first_request_still_runs_is_a_409(api: Api) -> None:
    reading, release = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"hello, "
        reading.set()  # the route asks for more: the first request holds the key
        await release.wait()
        yield b"slowly\n"

    headers = {**api.headers(), "Idempotency-Key": "busy", "Content-Type": "text/plain"}
    params = {"filename": "a.txt"}
    first = asyncio.create_task(
        api.app_client.put(
            "/v1/uploads/direct", params=params, content=slow_body(), headers=headers
        )
    )
    try:
        await asyncio.wait_for(reading.wait(), 10)
        busy = await api.app_client.put(
            "/v1/uploads/direct", params=params, content=b"hello, slowly\n", headers=headers
        )
        assert busy.status_code == 409, busy.text
        assert busy.json()["code"] == "idempotency_key_in_use"
    finally:
        release.set()
    assert (await first).status_code == 201
    assert await api.row_count() == 1


async def test_keys_are_per_user_and_expire(api: Api) -> None:
    alice = await _send(api, "POST /v1/uploads/direct", "shared")
    bob = await api.app_client.post(
        "/v1/uploads/direct",
        files=TEXT,
        headers={**api.headers("bob"), "Idempotency-Key": "shared"},
    )
    assert alice.status_code == bob.status_code == 201, bob.text
    assert alice.json()["file_id"] != bob.json()["file_id"]
    replayed = await _send(api, "POST /v1/uploads/direct", "shared")
    assert replayed.json()["file_id"] == alice.json()["file_id"]
    await _expire_keys(api)
    later = await _send(api, "POST /v1/uploads/direct", "shared")
    assert later.status_code == 201
    assert "idempotent-replayed" not in later.headers
    assert later.json()["file_id"] != alice.json()["file_id"]
    assert await api.row_count() == 3
    await _expire_keys(api)
    await run_cleanup(api.resources.session_factory, api.resources.storage, older_than=HOUR)
    async with api.resources.engine.connect() as connection:
        assert await connection.scalar(text("SELECT count(*) FROM idempotency_keys")) == 0


async def test_a_refused_request_does_not_keep_its_key(api: Api) -> None:
    headers = {**api.headers(), "Idempotency-Key": "first-try-refused"}
    refused = await api.app_client.post(
        "/v1/uploads/direct",
        files={"file": ("a.html", b"<html><script>", "text/html")},
        headers=headers,
    )
    assert 400 <= refused.status_code < 500, refused.text
    fixed = await api.app_client.post("/v1/uploads/direct", files=TEXT, headers=headers)
    assert fixed.status_code == 201, fixed.text
    again = await api.app_client.post("/v1/uploads/direct", files=TEXT, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert await api.row_count() == 1


@pytest.mark.parametrize("key", [b"", b"x" * 256, b"tab\there", "café".encode()])
async def test_a_malformed_key_is_a_400(api: Api, key: bytes) -> None:
    response = await api.app_client.post(
        "/v1/uploads/direct",
        files=TEXT,
        headers=[
            (b"authorization", api.headers()["Authorization"].encode()),
            (b"idempotency-key", key),
        ],
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "invalid_idempotency_key"
    await api.assert_nothing_left()
