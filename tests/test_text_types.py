"""Harmless text goes in as attachments; active content stays out; sha256 is base64.

Each case runs the presigned flow (request-url, PUT, confirm) on the local
backend, as the demo page and the README's curl walkthrough do.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest

from tests import samples
from tests.conftest import Api
from uploadsvc import content_types as ct

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local", "pg-local"], indirect=True)

MARKDOWN = b"# Minutes\n\n- *Ada* opened the meeting\n- [notes](https://example.com)\n"
CSV = b"name,age,city\nada,36,london\ngrace,45,new york\n"
JSON = b'{"name": "uploadsvc", "tags": ["upload", "s3"], "size": 3}\n'
LOG = b"2026-01-01T12:00:00Z INFO started\n2026-01-01T12:00:01Z WARN disk at 91%\n"
# Printable text that libmagic takes for an HP pen plotter's commands.
PLOTTER_LOOKALIKES = [
    b"NP is the abbreviation we use for nurse practitioner.\n",
    b"BP readings for the week: 120/80, 118/79, 121/82.\n",
    b"PA system check at nine.\n",
]
SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n'
SHELL = b"#!/bin/sh\ncurl https://example.com/x | sh\n"


async def _confirmed(
    api: Api, body: bytes, *, filename: str, content_type: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    grant = await api.request_url(body, filename=filename, content_type=content_type)
    assert grant.status_code == 201, grant.text
    put = await api.put(grant.json(), body)
    assert put.status_code == 200, put.text
    confirmed = await api.confirm(grant.json()["file_key"])
    assert confirmed.status_code == 200, confirmed.text
    return grant.json(), confirmed.json()


async def _assert_served_as_attachment(api: Api, file: dict[str, Any], body: bytes) -> None:
    download = await api.app_client.get(file["download_url"])
    assert download.status_code == 200
    assert download.content == body
    assert download.headers["content-type"].split(";")[0] == file["content_type"]
    assert download.headers["content-disposition"].startswith("attachment;")


@pytest.mark.parametrize(
    ("filename", "declared", "body", "stored", "extension"),
    [
        ("notes.md", "text/markdown", MARKDOWN, "text/markdown", ".md"),
        ("notes.md", "text/x-markdown", MARKDOWN, "text/markdown", ".md"),
        ("table.csv", "text/csv", CSV, "text/csv", ".csv"),
        ("data.json", "application/json", JSON, "application/json", ".json"),
        ("server.log", "text/plain", LOG, "text/plain", ".txt"),
        # What Chromium on Linux declares for a .log file.
        ("server.log", "text/x-log", LOG, "text/plain", ".txt"),
    ],
    ids=["markdown", "x-markdown", "csv", "json", "log", "x-log"],
)
async def test_harmless_text_is_confirmed_and_served_as_an_attachment(
    api: Api, filename: str, declared: str, body: bytes, stored: str, extension: str
) -> None:
    grant, file = await _confirmed(api, body, filename=filename, content_type=declared)
    assert grant["file_key"].endswith(extension)
    assert file["content_type"] == stored
    assert file["filename"] == filename
    await _assert_served_as_attachment(api, file, body)


async def test_json_cut_off_by_the_magic_prefix_is_still_json(api: Api) -> None:
    """Only the first bytes are read: a long JSON array looks like plain text there."""
    body = b"[" + b",".join(b'{"id": %d, "name": "speaker"}' % i for i in range(2000)) + b"]"
    assert len(body) > ct.MAGIC_PREFIX_BYTES
    _, file = await _confirmed(api, body, filename="speakers.json", content_type="application/json")
    assert file["content_type"] == "application/json"


@pytest.mark.parametrize("body", PLOTTER_LOOKALIKES, ids=["NP", "BP", "PA"])
async def test_printable_text_libmagic_calls_exotic_is_plain_text(api: Api, body: bytes) -> None:
    assert await ct.detect_type(body) == "text/plain"
    _, file = await _confirmed(api, body, filename="note.txt", content_type="text/plain")
    assert file["content_type"] == "text/plain"
    await _assert_served_as_attachment(api, file, body)


async def test_undeclared_printable_text_goes_in_as_plain_text(api: Api) -> None:
    """The direct route without a type: the bytes decide, and they are text."""
    response = await api.app_client.post(
        "/v1/uploads/direct",
        files={"file": ("note", PLOTTER_LOOKALIKES[0], "application/octet-stream")},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "text/plain"
    assert response.json()["file_key"].endswith(".txt")


@pytest.mark.parametrize(
    ("declared", "body"),
    [
        ("text/markdown", samples.HTML),
        ("text/plain", samples.HTML),
        ("text/plain", SVG),
        ("text/markdown", SVG),
        ("text/plain", SHELL),
        ("application/json", SHELL),
        # Binary, even when it starts with letters libmagic reads as a plotter's.
        ("text/plain", b"NP\x00\x01\x02\x03" * 10),
    ],
    ids=[
        "html-as-md",
        "html-as-txt",
        "svg-as-txt",
        "svg-as-md",
        "sh-as-txt",
        "sh-as-json",
        "binary",
    ],
)
async def test_active_content_declared_as_text_is_rejected(
    api: Api, declared: str, body: bytes
) -> None:
    grant = await api.request_url(body, filename="notes.txt", content_type=declared)
    assert grant.status_code == 201, grant.text
    assert (await api.put(grant.json(), body)).status_code == 200
    confirmed = await api.confirm(grant.json()["file_key"])
    assert confirmed.status_code == 422, confirmed.text
    assert confirmed.json()["code"] == "type_mismatch"
    assert not await api.object_exists(grant.json()["file_key"])


@pytest.mark.parametrize(
    "declared", ["text/html", "image/svg+xml", "text/javascript", "application/xhtml+xml"]
)
async def test_active_types_are_refused_before_anything_is_stored(api: Api, declared: str) -> None:
    response = await api.request_url(b"<x/>", filename="page", content_type=declared)
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "unsupported_type"
    assert await api.row_count() == 0


@pytest.mark.parametrize("route", ["/v1/uploads/request-url", "/v1/uploads/multipart"])
async def test_a_hex_sha256_is_refused_with_the_encoding_it_needs(api: Api, route: str) -> None:
    body = b"Hello, uploadsvc!\n" * 400_000 if route.endswith("multipart") else b"hello\n"
    hex_digest = hashlib.sha256(body).hexdigest()  # what `sha256sum` prints
    response = await api.app_client.post(
        route,
        json={
            "filename": "hello.txt",
            "content_type": "text/plain",
            "size": len(body),
            "sha256": hex_digest,
        },
        headers=api.headers(),
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    [error] = problem["errors"]
    assert error["loc"][-1] == "sha256"
    assert "base64" in error["msg"]
    assert "not its hex form" in error["msg"]
    assert "openssl dgst -sha256 -binary" in error["msg"]
    assert await api.row_count() == 0

    # The same digest in base64 is accepted.
    good = base64.b64encode(hashlib.sha256(body).digest()).decode()
    accepted = await api.app_client.post(
        route,
        json={
            "filename": "hello.txt",
            "content_type": "text/plain",
            "size": len(body),
            "sha256": good,
        },
        headers=api.headers(),
    )
    assert accepted.status_code == 201, accepted.text
