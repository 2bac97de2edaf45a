"""Native multipart presigned uploads: start, PUT parts, resume, complete, abort."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conftest import Api
from tests.support.files import HTML, sha256_b64
from tests.support.files import pdf as pdf_of_size
from uploadsvc.services.multipart_uploads import MiB, choose_part_size, part_count

PART = 5 * MiB


async def start(api: Api, body: bytes, *, user: str = "alice", **fields: Any) -> dict[str, Any]:
    payload = {"filename": "big.pdf", "content_type": "application/pdf", "size": len(body)}
    payload.update(fields)
    response = await api.app_client.post(
        "/v1/uploads/multipart", json=payload, headers=api.headers(user)
    )
    assert response.status_code == 201, response.text
    started: dict[str, Any] = response.json()
    return started


async def put_part(api: Api, part: dict[str, Any], body: bytes) -> str:
    """PUT one part's bytes to its URL; return the ETag storage answered."""
    start_at = (part["part_number"] - 1) * PART
    response = await api.app_client.put(
        part["url"], content=body[start_at : start_at + PART], headers=part["headers"]
    )
    assert response.status_code == 200, response.text
    return response.headers["etag"]


async def complete(api: Api, upload_id: str, etags: dict[int, str], *, user: str = "alice") -> Any:
    parts = [{"part_number": number, "etag": etag} for number, etag in sorted(etags.items())]
    return await api.app_client.post(
        f"/v1/uploads/{upload_id}/complete", json={"parts": parts}, headers=api.headers(user)
    )


async def assert_nothing_stored(api: Api, key: str) -> None:
    assert not await api.object_exists(key)
    assert await api.resources.storage.list_incomplete_uploads("") == []
    assert await api.open_multipart_keys() == []
    files = await api.app_client.get("/v1/files", headers=api.headers())
    assert files.json()["items"] == []


async def test_parts_uploaded_then_completed_make_the_confirmed_file(api: Api) -> None:
    body = pdf_of_size(2 * PART + 123_456)
    started = await start(api, body, sha256=sha256_b64(body))
    assert started["part_size"] == PART
    assert [part["size"] for part in started["parts"]] == [PART, PART, 123_456]
    assert started["file_key"].startswith("uploads/alice/")
    assert started["file_key"].endswith(".pdf")
    # On S3, named in the multipart ledger from before S3 started it until completed.
    ledger = [started["file_key"]] if api.resources.storage.tracks_multipart_uploads else []
    assert await api.open_multipart_keys() == ledger

    etags = {part["part_number"]: await put_part(api, part, body) for part in started["parts"]}
    completed = await complete(api, started["upload_id"], etags)
    assert completed.status_code == 200, completed.text
    file = completed.json()
    assert file["status"] == "confirmed"
    assert file["file_id"] == started["upload_id"]
    assert file["size_bytes"] == len(body)
    assert file["sha256"] == sha256_b64(body)
    download = await api.app_client.get(file["download_url"])
    assert download.content == body
    assert await api.resources.storage.list_incomplete_uploads("") == []
    assert await api.open_multipart_keys() == []

    # Completing again answers the same file, as a repeated confirm does.
    again = await complete(api, started["upload_id"], etags)
    assert again.status_code == 200
    assert again.json()["file_id"] == file["file_id"]


async def test_a_crashed_client_resumes_from_the_parts_storage_has(api: Api) -> None:
    body = pdf_of_size(3 * PART + 10)
    started = await start(api, body)
    parts = {part["part_number"]: part for part in started["parts"]}
    sent = {number: await put_part(api, parts[number], body) for number in (1, 3)}
    del parts, started["parts"]  # the app restarts: only the upload id survived

    listed = await api.app_client.get(
        f"/v1/uploads/{started['upload_id']}/parts", headers=api.headers()
    )
    assert listed.status_code == 200, listed.text
    have = {part["part_number"]: part for part in listed.json()["parts"]}
    assert sorted(have) == [1, 3]
    assert {number: part["etag"] for number, part in have.items()} == sent
    assert have[1]["size"] == PART
    assert listed.json()["part_size"] == PART

    missing = [n for n in range(1, part_count(len(body), PART) + 1) if n not in have]
    assert missing == [2, 4]
    fresh = await api.app_client.post(
        f"/v1/uploads/{started['upload_id']}/parts/urls",
        json={"part_numbers": missing},
        headers=api.headers(),
    )
    assert fresh.status_code == 200, fresh.text
    assert [part["size"] for part in fresh.json()["parts"]] == [PART, 10]
    for part in fresh.json()["parts"]:
        sent[part["part_number"]] = await put_part(api, part, body)

    completed = await complete(api, started["upload_id"], sent)
    assert completed.status_code == 200, completed.text
    assert (await api.app_client.get(completed.json()["download_url"])).content == body


async def test_a_part_of_another_size_is_refused_by_storage(api: Api) -> None:
    body = pdf_of_size(PART + 1000)
    started = await start(api, body)
    first = started["parts"][0]
    short = await api.app_client.put(first["url"], content=body[: PART - 1], headers={})
    assert short.status_code == 403, short.text
    longer = await api.app_client.put(first["url"], content=body[: PART + 1], headers={})
    assert longer.status_code == 403, longer.text
    listed = await api.app_client.get(
        f"/v1/uploads/{started['upload_id']}/parts", headers=api.headers()
    )
    assert listed.json()["parts"] == []


async def test_a_total_other_than_the_declared_size_is_rejected_and_leaves_nothing(
    api: Api,
) -> None:
    body = pdf_of_size(2 * PART + 500)
    started = await start(api, body)
    etags = {part["part_number"]: await put_part(api, part, body) for part in started["parts"]}
    del etags[3]  # complete without the last part: 10 MiB where 10 MiB + 500 were declared

    completed = await complete(api, started["upload_id"], etags)
    assert completed.status_code == 422, completed.text
    assert completed.json()["code"] == "size_mismatch"
    assert await api.status_of(started["upload_id"]) == "rejected"
    await assert_nothing_stored(api, started["file_key"])


async def test_a_wrong_etag_is_refused_and_the_upload_stays_open(api: Api) -> None:
    body = pdf_of_size(PART + 77)
    started = await start(api, body)
    etags = {part["part_number"]: await put_part(api, part, body) for part in started["parts"]}

    wrong = await complete(api, started["upload_id"], {**etags, 2: '"' + "0" * 32 + '"'})
    assert wrong.status_code == 422, wrong.text
    assert wrong.json()["code"] == "invalid_parts"
    assert await api.status_of(started["upload_id"]) == "pending"

    right = await complete(api, started["upload_id"], etags)
    assert right.status_code == 200, right.text


async def test_bytes_that_are_not_the_declared_type_are_rejected_after_completion(
    api: Api,
) -> None:
    body = HTML + os.urandom(PART + 10 - len(HTML))
    started = await start(api, body, filename="pic.png", content_type="image/png")
    etags = {part["part_number"]: await put_part(api, part, body) for part in started["parts"]}
    completed = await complete(api, started["upload_id"], etags)
    assert completed.status_code == 422, completed.text
    assert completed.json()["code"] == "type_mismatch"
    await assert_nothing_stored(api, started["file_key"])


async def test_a_declared_sha256_that_differs_is_rejected(api: Api) -> None:
    body = pdf_of_size(PART + 5)
    started = await start(api, body, sha256=sha256_b64(b"other bytes"))
    etags = {part["part_number"]: await put_part(api, part, body) for part in started["parts"]}
    completed = await complete(api, started["upload_id"], etags)
    assert completed.status_code == 422, completed.text
    assert completed.json()["code"] == "checksum_mismatch"
    await assert_nothing_stored(api, started["file_key"])


async def test_abort_frees_the_parts_and_ends_the_upload(api: Api) -> None:
    body = pdf_of_size(PART + 5)
    started = await start(api, body)
    await put_part(api, started["parts"][0], body)
    assert len(await api.resources.storage.list_incomplete_uploads("")) == 1

    url = f"/v1/uploads/{started['upload_id']}"
    aborted = await api.app_client.delete(url, headers=api.headers())
    assert aborted.status_code == 204, aborted.text
    assert await api.status_of(started["upload_id"]) == "aborted"
    await assert_nothing_stored(api, started["file_key"])
    assert (await api.app_client.delete(url, headers=api.headers())).status_code == 204
    parts = await api.app_client.get(f"{url}/parts", headers=api.headers())
    assert parts.status_code == 410
    assert parts.json()["code"] == "upload_gone"


async def test_abort_of_a_single_put_upload_deletes_its_object(api: Api) -> None:
    grant = await api.grant(b"hello there\n")
    assert (await api.put(grant, b"hello there\n")).status_code == 200
    aborted = await api.app_client.delete(
        f"/v1/uploads/{grant['upload_id']}", headers=api.headers()
    )
    assert aborted.status_code == 204
    assert not await api.object_exists(grant["file_key"])
    confirm = await api.confirm(grant["file_key"])
    assert confirm.status_code == 410
    assert confirm.json()["code"] == "upload_gone"


async def test_a_confirmed_file_cannot_be_aborted(api: Api) -> None:
    file = await api.upload(b"keep me\n")
    response = await api.app_client.delete(f"/v1/uploads/{file['file_id']}", headers=api.headers())
    assert response.status_code == 409
    assert response.json()["code"] == "already_confirmed"
    assert await api.object_exists(file["file_key"])


async def test_another_users_multipart_upload_answers_404_everywhere(api: Api) -> None:
    body = pdf_of_size(PART + 5)
    started = await start(api, body, user="alice")
    url = f"/v1/uploads/{started['upload_id']}"
    mallory = api.headers("mallory")
    responses = [
        await api.app_client.get(f"{url}/parts", headers=mallory),
        await api.app_client.post(f"{url}/parts/urls", json={"part_numbers": [1]}, headers=mallory),
        await complete(api, started["upload_id"], {1: '"x"'}, user="mallory"),
        await api.app_client.delete(url, headers=mallory),
    ]
    assert [response.status_code for response in responses] == [404] * 4
    assert {response.json()["code"] for response in responses} == {"upload_not_found"}
    assert await api.status_of(started["upload_id"]) == "pending"


async def test_confirm_before_completion_says_the_object_is_missing(api: Api) -> None:
    body = pdf_of_size(PART + 5)
    started = await start(api, body)
    response = await api.app_client.post(
        f"/v1/uploads/{started['upload_id']}/confirm", headers=api.headers()
    )
    assert response.status_code == 409
    assert response.json()["code"] == "object_missing"
    single = await api.app_client.post(
        f"/v1/uploads/{started['upload_id']}/url", headers=api.headers()
    )
    assert single.status_code == 409
    assert single.json()["code"] == "multipart_upload"


async def test_part_numbers_outside_the_upload_are_refused(api: Api) -> None:
    started = await start(api, pdf_of_size(PART + 5))
    response = await api.app_client.post(
        f"/v1/uploads/{started['upload_id']}/parts/urls",
        json={"part_numbers": [1, 3]},
        headers=api.headers(),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_part_number"


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"size": 101 * MiB}, 413, "too_large"),
        ({"content_type": "text/html"}, 415, "unsupported_type"),
        ({"size": 0}, 422, "validation_error"),
    ],
)
@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_a_refused_declaration_starts_nothing(
    api: Api, fields: dict[str, Any], status: int, code: str
) -> None:
    payload = {"filename": "big.pdf", "content_type": "application/pdf", "size": 6 * MiB}
    payload.update(fields)
    response = await api.app_client.post(
        "/v1/uploads/multipart", json=payload, headers=api.headers()
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    await api.assert_nothing_left()


def test_part_size_is_at_least_5_mib_and_parts_at_most_1000() -> None:
    assert choose_part_size(1) == PART
    assert choose_part_size(12 * MiB) == PART
    for size in (5 * MiB * 1000 + 1, 10 * 1024 * MiB, 200 * MiB, 5 * 1024**4):
        part_size = choose_part_size(size)
        assert part_size >= PART
        assert part_size % MiB == 0
        assert part_count(size, part_size) <= 1000
