"""The core flow, end to end: request a URL, PUT, confirm, download."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.support.files import MiB, pdf, sha256_b64


async def test_presigned_upload_then_download_returns_the_same_bytes(api: Api) -> None:
    body = pdf(2048)
    grant = await api.request_url(
        body,
        filename="Quarterly report.pdf",
        content_type="application/pdf",
        sha256=sha256_b64(body),
    )
    assert grant.status_code == 201, grant.text
    granted = grant.json()
    assert granted["method"] == "PUT"
    assert granted["file_key"].startswith("uploads/alice/")
    assert granted["file_key"].endswith(".pdf")
    assert granted["headers"]["Content-Type"] == "application/pdf"

    put = await api.put(granted, body)
    assert put.status_code == 200, put.text

    confirmed = await api.confirm(granted["file_key"])
    assert confirmed.status_code == 200, confirmed.text
    file = confirmed.json()
    assert file["status"] == "confirmed"
    assert file["file_id"] == granted["upload_id"]
    assert file["size_bytes"] == len(body)
    assert file["filename"] == "Quarterly report.pdf"

    download = await api.app_client.get(file["download_url"])
    assert download.status_code == 200
    assert download.content == body
    assert download.headers["content-type"] == "application/pdf"
    assert "attachment" in download.headers["content-disposition"]
    assert "Quarterly" in download.headers["content-disposition"]


async def test_download_route_answers_json_or_a_redirect(api: Api) -> None:
    file = await api.upload(b"hello, world\n")
    as_json = await api.app_client.get(
        f"/v1/files/{file['file_id']}/download", headers=api.headers()
    )
    assert as_json.status_code == 200
    assert (await api.app_client.get(as_json.json()["download_url"])).content == b"hello, world\n"

    redirect = await api.app_client.get(
        f"/v1/files/{file['file_id']}/download?redirect=true", headers=api.headers()
    )
    assert redirect.status_code == 307
    assert (await api.app_client.get(redirect.headers["location"])).content == b"hello, world\n"


async def test_non_ascii_filename_uses_rfc6266_filename_star(api: Api) -> None:
    file = await api.upload(b"bonjour\n", filename="résumé été.txt")
    download = await api.app_client.get(file["download_url"])
    disposition = download.headers["content-disposition"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9" in disposition
    assert file["filename"] == "résumé été.txt"


async def test_ranged_download(api: Api) -> None:
    file = await api.upload(b"0123456789")
    partial = await api.app_client.get(file["download_url"], headers={"Range": "bytes=2-5"})
    assert partial.status_code == 206
    assert partial.content == b"2345"


async def test_files_are_listed_newest_first_with_a_cursor(api: Api) -> None:
    ids = [(await api.upload(f"file {n}\n".encode()))["file_id"] for n in range(3)]
    await api.upload(b"someone else's\n", user="bob")

    first = await api.app_client.get("/v1/files?limit=2", headers=api.headers())
    assert first.status_code == 200
    page = first.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"]
    second = await api.app_client.get(
        f"/v1/files?limit=2&cursor={page['next_cursor']}", headers=api.headers()
    )
    rest = second.json()
    assert rest["next_cursor"] is None
    listed = [item["file_id"] for item in page["items"] + rest["items"]]
    assert listed == ids[::-1]

    bad = await api.app_client.get("/v1/files?cursor=not-a-cursor", headers=api.headers())
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"


async def test_get_and_delete_a_file(api: Api) -> None:
    file = await api.upload(b"to be deleted\n")
    got = await api.app_client.get(f"/v1/files/{file['file_id']}", headers=api.headers())
    assert got.status_code == 200
    assert got.json()["file_key"] == file["file_key"]

    deleted = await api.app_client.delete(f"/v1/files/{file['file_id']}", headers=api.headers())
    assert deleted.status_code == 204
    assert not await api.object_exists(file["file_key"])
    assert await api.status_of(file["file_id"]) == "deleted"
    again = await api.app_client.get(f"/v1/files/{file['file_id']}", headers=api.headers())
    assert again.status_code == 404
    assert again.headers["content-type"] == "application/problem+json"


async def test_reissued_url_still_uploads(api: Api) -> None:
    body = b"slow link\n"
    grant = await api.grant(body)
    fresh = await api.app_client.post(
        f"/v1/uploads/{grant['upload_id']}/url", headers=api.headers()
    )
    assert fresh.status_code == 200, fresh.text
    assert fresh.json()["file_key"] == grant["file_key"]
    assert (await api.put(fresh.json(), body)).status_code == 200
    confirmed = await api.app_client.post(
        f"/v1/uploads/{grant['upload_id']}/confirm", headers=api.headers()
    )
    assert confirmed.status_code == 200, confirmed.text


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"content_type": "image/svg+xml"}, 415, "unsupported_type"),
        ({"content_type": "application/zip", "purpose": "avatar"}, 415, "unsupported_type"),
        (
            {"size": 6 * MiB, "purpose": "avatar", "content_type": "image/png"},
            413,
            "too_large",
        ),
        ({"size": 0}, 422, "validation_error"),
        ({"sha256": "not base64!"}, 422, "validation_error"),
        ({"purpose": "nonsense"}, 422, "validation_error"),
    ],
)
async def test_request_url_refuses_bad_declarations(
    api: Api, fields: dict[str, Any], status: int, code: str
) -> None:
    response = await api.request_url(b"x", **fields)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code


async def test_another_users_ids_answer_404_on_every_route(api: Api) -> None:
    file = await api.upload(b"alice's file\n")
    pending = await api.grant(b"alice's pending\n")
    bob = api.headers("bob")
    c = api.app_client
    responses: list[httpx.Response] = [
        await c.get(f"/v1/files/{file['file_id']}", headers=bob),
        await c.get(f"/v1/files/{file['file_id']}/download", headers=bob),
        await c.delete(f"/v1/files/{file['file_id']}", headers=bob),
        await c.post(f"/v1/uploads/{pending['upload_id']}/url", headers=bob),
        await c.post(f"/v1/uploads/{pending['upload_id']}/confirm", headers=bob),
        await c.post("/v1/uploads/confirm", json={"file_key": pending["file_key"]}, headers=bob),
        await c.post(f"/v1/uploads/{file['file_id']}/confirm", headers=bob),
    ]
    for response in responses:
        assert response.status_code == 404, (response.request.url, response.text)
    # ... exactly like ids that do not exist at all.
    missing = await c.get(f"/v1/files/{uuid.uuid4()}", headers=bob)
    assert missing.status_code == 404
    assert missing.json()["code"] == responses[0].json()["code"]
    # Bob's list does not show Alice's file; Alice's file is untouched.
    assert (await c.get("/v1/files", headers=bob)).json()["items"] == []
    assert await api.object_exists(file["file_key"])


async def test_an_admin_may_read_another_users_file(api: Api) -> None:
    file = await api.upload(b"alice's file\n")
    admin = api.headers("root", admin=True)
    response = await api.app_client.get(f"/v1/files/{file['file_id']}", headers=admin)
    assert response.status_code == 200
