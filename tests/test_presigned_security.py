"""Presigned URLs are enforced by storage itself, for S3 (strict LocalStack) and local.

Each refused PUT must leave nothing behind: a later confirm answers 409
``object_missing``, the upload stays pending and no file is recorded.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from tests.conftest import Api
from tests.support.files import sha256_b64
from uploadsvc.storage.base import PutGrant

pytestmark = pytest.mark.parametrize("backend", ["pg-s3", "pg-local"])

BODY = b"the quick brown fox jumps over the lazy dog\n" * 10


def _tamper_signature(url: str) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    tampered = []
    for name, value in query:
        if name.lower() in ("x-amz-signature", "x-signature"):
            value = ("0" if value[0] != "0" else "1") + value[1:]
        tampered.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(tampered)))


async def _grant(api: Api) -> dict[str, Any]:
    return await api.grant(BODY, sha256=sha256_b64(BODY))


async def _assert_nothing_recorded(api: Api, grant: dict[str, Any]) -> None:
    assert not await api.object_exists(grant["file_key"])
    confirm = await api.confirm(grant["file_key"])
    assert confirm.status_code == 409, confirm.text
    assert confirm.json()["code"] == "object_missing"
    assert await api.status_of(grant["upload_id"]) == "pending"
    files = await api.app_client.get("/v1/files", headers=api.headers())
    assert files.json()["items"] == []


async def test_tampered_signature_is_refused(api: Api) -> None:
    grant = await _grant(api)
    response = await api.put({**grant, "upload_url": _tamper_signature(grant["upload_url"])}, BODY)
    assert response.status_code == 403, response.text
    await _assert_nothing_recorded(api, grant)


async def test_url_for_another_key_is_refused(api: Api) -> None:
    grant = await _grant(api)
    other = grant["upload_url"].replace(grant["file_key"], grant["file_key"] + "x", 1)
    response = await api.put({**grant, "upload_url": other}, BODY)
    assert response.status_code == 403, response.text
    await _assert_nothing_recorded(api, grant)


async def test_expired_url_is_refused(api: Api) -> None:
    grant = await _grant(api)
    # Same key and headers as the grant, but a URL valid for one second.
    short = await api.resources.storage.presign_put(
        PutGrant(
            key=grant["file_key"],
            content_type="text/plain",
            content_length=len(BODY),
            sha256=sha256_b64(BODY),
            expires_in=1,
        )
    )
    await asyncio.sleep(2.5)
    response = await api.app_client.put(short.url, content=BODY, headers=short.headers)
    assert response.status_code == 403, response.text
    await _assert_nothing_recorded(api, grant)


async def test_wrong_content_type_is_refused(api: Api) -> None:
    grant = await _grant(api)
    response = await api.put(grant, BODY, **{"Content-Type": "text/html"})
    assert response.status_code == 403, response.text
    await _assert_nothing_recorded(api, grant)


async def test_wrong_length_is_refused(api: Api) -> None:
    grant = await _grant(api)
    response = await api.put(grant, BODY + b"more bytes than were declared")
    assert response.status_code == 403, response.text
    await _assert_nothing_recorded(api, grant)


async def test_wrong_checksum_is_refused(api: Api) -> None:
    grant = await _grant(api)
    # Same length, other bytes: only the signed SHA-256 can tell.
    response = await api.put(grant, BODY.upper())
    assert response.status_code == 400, response.text
    await _assert_nothing_recorded(api, grant)


async def test_unsigned_checksum_header_cannot_be_dropped(api: Api) -> None:
    grant = await _grant(api)
    headers = {k: v for k, v in grant["headers"].items() if k.lower() != "x-amz-checksum-sha256"}
    response = await api.app_client.put(grant["upload_url"], content=BODY.upper(), headers=headers)
    assert response.status_code == 403, response.text
    await _assert_nothing_recorded(api, grant)


async def test_a_confirmed_object_cannot_be_overwritten_through_its_old_url(api: Api) -> None:
    grant = await _grant(api)
    assert (await api.put(grant, BODY)).status_code == 200
    assert (await api.confirm(grant["file_key"])).status_code == 200
    replay = await api.put(grant, BODY)
    assert replay.status_code == 412, replay.text
    download = await api.app_client.get(
        (await api.confirm(grant["file_key"])).json()["download_url"]
    )
    assert download.content == BODY


async def test_tampered_download_url_is_refused(api: Api) -> None:
    file = await api.upload(BODY)
    response = await api.app_client.get(_tamper_signature(file["download_url"]))
    assert response.status_code == 403
