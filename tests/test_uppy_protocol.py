"""Uppy's S3 protocol (`@uppy/aws-s3` with `endpoint`), spoken by hand over HTTP.

The browser test (tests/test_browser.py) runs the real Uppy against these
routes; here each route's answers and refusals are pinned down.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import Api
from tests.support.files import MiB, pdf, png, sha256_b64
from uploadsvc.models.uploads import Upload
from uploadsvc.profiles import staging_key
from uploadsvc.services.cleanup import run_cleanup


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Small enough to cross with a test body.
    return {"max_attachment_bytes": 12 * MiB}


async def upload_with_parameters(api: Api, params: dict[str, Any], body: bytes) -> httpx.Response:
    """What Uppy does with the answer of /s3/params: a form POST or a PUT."""
    if params["method"] == "POST":
        return await api.app_client.post(
            params["url"],
            data=params["fields"],
            files={"file": ("ignored.pdf", body, params["fields"]["Content-Type"])},
        )
    return await api.app_client.put(params["url"], content=body, headers=params["headers"])


async def get_params(api: Api, *, user: str = "alice", **query: str) -> httpx.Response:
    return await api.app_client.get(
        "/v1/s3/params",
        params={"filename": "doc.pdf", "type": "application/pdf", **query},
        headers=api.headers(user),
    )


async def test_single_request_upload_then_confirm(api: Api) -> None:
    response = await get_params(api)
    assert response.status_code == 200, response.text
    params = response.json()
    assert params["key"].startswith("uploads/alice/")
    assert params["key"].endswith(".pdf")
    if api.backend.endswith("s3"):
        # A POST policy: the key and type are fixed in its fields.
        assert params["method"] == "POST"
        # The policy writes to the staging key, which confirm empties.
        assert params["fields"]["key"] == staging_key(params["key"])
        assert params["fields"]["Content-Type"] == "application/pdf"
    else:
        assert params["method"] == "PUT"
    body = pdf(5000)
    stored = await upload_with_parameters(api, params, body)
    # S3 answers a form POST without success_action_status 204; a PUT answers 200.
    assert stored.status_code == (204 if params["method"] == "POST" else 200), stored.text

    confirmed = await api.confirm(params["key"])
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["size_bytes"] == len(body)
    assert (await api.app_client.get(confirmed.json()["download_url"])).content == body


async def test_single_request_upload_is_held_to_the_profile_size(api: Api) -> None:
    params = (await get_params(api)).json()
    refused = await upload_with_parameters(api, params, pdf(12 * MiB + 1))
    if api.backend.endswith("s3"):
        assert refused.status_code == 400, refused.text
        assert "<Code>EntityTooLarge</Code>" in refused.text
    else:
        assert refused.status_code == 413, refused.text
        assert refused.json()["code"] == "entity_too_large"
    assert not await api.object_exists(params["key"])


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_params_refuse_a_type_the_profile_does_not_take(api: Api) -> None:
    response = await get_params(api, type="text/html")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_type"
    response = await get_params(api, **{"metadata[purpose]": "nonsense"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_purpose"
    response = await api.app_client.get(
        "/v1/s3/params", params={"filename": "a.pdf", "type": "application/pdf"}
    )
    assert response.status_code == 401
    await api.assert_nothing_left()


async def test_multipart_upload_as_uppy_does_it(api: Api) -> None:
    body = pdf(5 * MiB + 3000)
    created = await api.app_client.post(
        "/v1/s3/multipart",
        json={
            "filename": "big.pdf",
            "type": "application/pdf",
            "metadata": {"name": "big.pdf", "type": "application/pdf", "relativePath": None},
        },
        headers=api.headers(),
    )
    assert created.status_code == 200, created.text
    key, upload_id = created.json()["key"], created.json()["uploadId"]
    assert key.startswith("uploads/alice/")
    base = f"/v1/s3/multipart/{upload_id}"

    etags = {}
    for number, chunk in ((1, body[: 5 * MiB]), (2, body[5 * MiB :])):
        signed = await api.app_client.get(
            f"{base}/{number}", params={"key": key}, headers=api.headers()
        )
        assert signed.status_code == 200, signed.text
        assert signed.json()["expires"] == api.settings.upload_url_expires_seconds
        put = await api.app_client.put(signed.json()["url"], content=chunk)
        assert put.status_code == 200, put.text
        etags[number] = put.headers["etag"]

    listed = await api.app_client.get(base, params={"key": key}, headers=api.headers())
    assert listed.status_code == 200, listed.text
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed.json()] == [
        (1, etags[1], 5 * MiB),
        (2, etags[2], len(body) - 5 * MiB),
    ]

    completed = await api.app_client.post(
        f"{base}/complete",
        params={"key": key},
        json={"parts": [{"PartNumber": n, "ETag": etag} for n, etag in etags.items()]},
        headers=api.headers(),
    )
    assert completed.status_code == 200, completed.text
    assert completed.json()["key"] == key
    assert (await api.app_client.get(completed.json()["location"])).content == body
    files = (await api.app_client.get("/v1/files", headers=api.headers())).json()["items"]
    assert [(f["file_key"], f["size_bytes"]) for f in files] == [(key, len(body))]


async def test_batch_signing_and_abort(api: Api) -> None:
    created = await api.app_client.post(
        "/v1/s3/multipart",
        json={"filename": "a.png", "type": "image/png", "metadata": {"purpose": "avatar"}},
        headers=api.headers(),
    )
    key, upload_id = created.json()["key"], created.json()["uploadId"]
    assert key.startswith("users/alice/avatar/")
    base = f"/v1/s3/multipart/{upload_id}"
    batch = await api.app_client.get(
        f"{base}/batch", params={"key": key, "partNumbers": "1"}, headers=api.headers()
    )
    assert batch.status_code == 200, batch.text
    # An avatar (5 MiB at most) has one part: see test_undeclared_multipart.py.
    assert sorted(batch.json()["presignedUrls"]) == ["1"]
    put = await api.app_client.put(batch.json()["presignedUrls"]["1"], content=png())
    assert put.status_code == 200

    aborted = await api.app_client.delete(base, params={"key": key}, headers=api.headers())
    assert aborted.status_code == 200, aborted.text
    assert await api.resources.storage.list_incomplete_uploads("") == []
    again = await api.app_client.get(f"{base}/1", params={"key": key}, headers=api.headers())
    assert again.status_code == 410


async def test_keys_that_are_not_the_callers_pending_upload_are_never_signed(api: Api) -> None:
    created = await api.app_client.post(
        "/v1/s3/multipart",
        json={"filename": "a.pdf", "type": "application/pdf"},
        headers=api.headers("alice"),
    )
    key, upload_id = created.json()["key"], created.json()["uploadId"]
    single = (await get_params(api, user="mallory")).json()
    attempts = [
        # Alice's upload, signed for Mallory.
        ("mallory", upload_id, key),
        # A key Mallory made up, or someone else's key, with Alice's upload id.
        ("mallory", upload_id, "uploads/mallory/2026/01/01/evil.pdf"),
        ("alice", upload_id, "uploads/alice/2026/01/01/other.pdf"),
        # Mallory's own single-request upload: not a multipart upload of that id.
        ("mallory", upload_id, single["key"]),
        ("mallory", "made-up-upload-id", single["key"]),
    ]
    for user, attempt_id, attempt_key in attempts:
        for path in (f"{attempt_id}/1", f"{attempt_id}/batch?partNumbers=1", attempt_id):
            response = await api.app_client.get(
                f"/v1/s3/multipart/{path}",
                params={"key": attempt_key},
                headers=api.headers(user),
            )
            assert response.status_code == 404, (user, path, attempt_key, response.text)
            assert response.json()["code"] == "upload_not_found"
        for method in ("POST", "DELETE"):
            url = f"/v1/s3/multipart/{attempt_id}" + ("/complete" if method == "POST" else "")
            response = await api.app_client.request(
                method,
                url,
                params={"key": attempt_key},
                json={"parts": [{"PartNumber": 1, "ETag": '"x"'}]} if method == "POST" else None,
                headers=api.headers(user),
            )
            assert response.status_code == 404, (method, user, attempt_key, response.text)
    assert await api.status_of(str(await _upload_id_of(api, key))) == "pending"


async def _upload_id_of(api: Api, key: str) -> Any:
    async with api.resources.session_factory() as session:
        return await session.scalar(select(Upload.id).where(Upload.file_key == key))


async def test_a_policy_used_again_after_confirm_changes_nothing(api: Api) -> None:
    params = (await get_params(api)).json()
    body = pdf(5000)
    assert (await upload_with_parameters(api, params, body)).is_success
    confirmed = (await api.confirm(params["key"])).json()
    file_key = confirmed["file_key"]
    stored = await api.resources.storage.head(file_key)
    # Until it expires, the policy (S3: a POST, which cannot refuse to replace
    # an object) takes other bytes of the type: they land on the staging key.
    replay = await upload_with_parameters(api, params, pdf(6000))
    assert replay.is_success, replay.text
    again = (await api.confirm(params["key"])).json()
    assert (await api.app_client.get(again["download_url"])).content == body
    assert again["size_bytes"] == len(body)
    # The SHA-256 is storage's own (S3 hashes the copy), not a client's claim.
    assert again["sha256"] == confirmed["sha256"] == sha256_b64(body)
    assert await api.resources.storage.head(file_key) == stored
    # Uppy confirms with the key its URL wrote to, the staging key: the same file.
    assert (await api.confirm(staging_key(params["key"]))).json()["file_key"] == file_key
    # Cleanup removes what was staged after confirm, whatever its age.
    report = await run_cleanup(
        api.resources.session_factory, api.resources.storage, older_than=dt.timedelta(days=1)
    )
    assert report.deleted == 1
    assert await api.stored_keys() == [file_key]
