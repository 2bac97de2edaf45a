"""Hostile input gets a clear 4xx, never a 500, and changes nothing.

PostgreSQL backends: its column limits (``owner_id`` is 255 characters)
and its refusal of NUL characters are what a bad ``sub`` ran into.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select

from tests import samples
from tests.conftest import Api
from uploadsvc.models.events import ImportJob
from uploadsvc.security import mint_token

pytestmark = pytest.mark.parametrize("backend", ["pg-s3", "pg-local"])

MiB = 1024 * 1024


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_attachment_bytes": MiB, "max_event_import_bytes": MiB}


STREAMING_FORM_ROUTES = ["/v1/uploads/direct", "/v1/upload/file", "/v1/events/import/json"]


async def _import_jobs(api: Api) -> int:
    async with api.resources.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(ImportJob)) or 0)


async def _nothing_changed(api: Api) -> None:
    await api.assert_nothing_left()
    assert await _import_jobs(api) == 0


@pytest.mark.parametrize("route", STREAMING_FORM_ROUTES)
@pytest.mark.parametrize("length", [257, 4000])
async def test_an_overlong_multipart_boundary_is_a_400(api: Api, route: str, length: int) -> None:
    boundary = "b" * length
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\nhello\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    response = await api.app_client.post(
        route,
        content=body,
        headers={**api.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "malformed_multipart"
    await _nothing_changed(api)


@pytest.mark.parametrize("route", STREAMING_FORM_ROUTES)
async def test_a_boundary_of_256_characters_still_works(api: Api, route: str) -> None:
    boundary = "b" * 256
    if route == "/v1/events/import/json":
        name, data, kind = "event.zip", samples.zip_archive(), "application/zip"
    else:
        name, data, kind = "a.txt", b"hello\n", "text/plain"
    response = await api.app_client.post(
        route,
        files={"file": (name, data, kind)},
        headers={**api.headers(), "Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    # httpx writes its own boundary unless told one: tell it through the header.
    assert response.status_code in (200, 201, 202), response.text


@pytest.mark.parametrize(
    "sub",
    ["a" * 256, "x" * 10_000, "alice\x00", "ali\nce", "\x7f", "bob\ud800"],
    ids=["256-chars", "10k-chars", "nul", "newline", "del", "lone-surrogate"],
)
async def test_an_unusable_sub_is_a_401_before_any_write(api: Api, sub: str) -> None:
    headers = {"Authorization": f"Bearer {mint_token(api.settings, sub=sub)}"}
    text_file = {"file": ("a.txt", b"hello", "text/plain")}
    attempts: list[tuple[str, dict[str, Any]]] = [
        (
            "/v1/uploads/request-url",
            {"json": {"filename": "a", "content_type": "text/plain", "size": 5}},
        ),
        ("/v1/uploads/direct", {"files": text_file}),
        ("/v1/upload/file", {"files": text_file}),
        ("/v1/events/import/json", {"files": {"file": ("e.zip", samples.zip_archive())}}),
        ("/v1/uploads/confirm", {"json": {"file_key": "uploads/x/a.txt"}}),
    ]
    for path, body in attempts:
        response = await api.app_client.post(path, headers=headers, **body)
        assert response.status_code == 401, (path, response.text)
        assert response.json()["code"] == "invalid_claims"
    listed = await api.app_client.get("/v1/files", headers=headers)
    assert listed.status_code == 401
    await _nothing_changed(api)


async def test_a_sub_of_255_characters_is_a_user(api: Api) -> None:
    sub = "é" * 255  # characters, as the column counts them (510 bytes)
    file = await api.upload(b"hello\n", user=sub)
    assert file["status"] == "confirmed"
    listed = await api.app_client.get("/v1/files", headers=api.headers(sub))
    assert [item["file_id"] for item in listed.json()["items"]] == [file["file_id"]]


async def test_a_content_length_that_is_not_a_number_is_a_400(api: Api) -> None:
    # h11 and httptools refuse these before the app; the ASGI transport does not.
    for route in STREAMING_FORM_ROUTES:
        request = api.app_client.build_request(
            "POST",
            route,
            content=b"x",
            headers={
                **api.headers(),
                "Content-Type": "multipart/form-data; boundary=b",
                "Content-Length": "1_000",
            },
        )
        response = await api.app_client.send(request)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "bad_content_length"
    await _nothing_changed(api)


async def test_a_malformed_content_type_is_a_4xx(api: Api) -> None:
    for value in ['multipart/form-data; boundary="unterminated', "multipart/form-data; =;;="]:
        response = await api.app_client.post(
            "/v1/uploads/direct",
            content=b"--b--\r\n",
            headers={**api.headers(), "Content-Type": value},
        )
        assert 400 <= response.status_code < 500, (value, response.text)
    await _nothing_changed(api)


@pytest.mark.parametrize("route", STREAMING_FORM_ROUTES)
async def test_a_chunked_form_is_bounded_as_a_whole(api: Api, route: str) -> None:
    """Parts that are not the file still count: a form cannot stream forever."""
    files = 20 if route == "/v1/upload/file" else 1  # Open Event's takes up to 20 files
    limit = (MiB + 64 * 1024) * files
    filler = b"z" * (64 * 1024)
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield b'--B\r\nContent-Disposition: form-data; name="junk"\r\n\r\n'
        while pulled < 2 * limit:
            pulled += len(filler)
            yield filler

    response = await api.app_client.post(
        route,
        content=body(),
        headers={**api.headers(), "Content-Type": "multipart/form-data; boundary=B"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_large"
    assert pulled <= limit + 2 * len(filler)
    await _nothing_changed(api)
