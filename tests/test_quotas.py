"""Per-user quotas: 413 with the numbers, nothing recorded past them, exact under concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import Api
from tests.support.files import plain_text
from tests.test_metrics import scrape, value

QUOTA = 1000

pytestmark = pytest.mark.parametrize("backend", ["pg-local", "sqlite-local"])


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"user_quota_bytes": QUOTA}


async def _usage(api: Api, user: str = "alice") -> dict[str, Any]:
    response = await api.app_client.get("/v1/usage", headers=api.headers(user))
    assert response.status_code == 200, response.text
    usage: dict[str, Any] = response.json()
    return usage


async def test_usage_counts_confirmed_and_pending_bytes(api: Api) -> None:
    await api.upload(plain_text(300))
    await api.grant(plain_text(200))
    await api.upload(plain_text(50), user="bob")

    assert await _usage(api) == {
        "used_bytes": 500,
        "confirmed_bytes": 300,
        "pending_bytes": 200,
        "files": 1,
        "quota_bytes": QUOTA,
        "remaining_bytes": 500,
    }


async def test_request_url_past_the_quota_is_413_with_the_numbers(api: Api) -> None:
    await api.upload(plain_text(700))
    rows = await api.row_count()
    before = await scrape(api)

    response = await api.request_url(plain_text(301))

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "quota_exceeded"
    assert (problem["used_bytes"], problem["requested_bytes"], problem["quota_bytes"]) == (
        700,
        301,
        QUOTA,
    )
    assert await api.row_count() == rows
    refusals = "uploadsvc_quota_refusals_total"
    assert value(await scrape(api), refusals) - value(before, refusals) == 1
    # Exactly the room left still fits; another user's quota is their own.
    assert (await api.request_url(plain_text(300))).status_code == 201
    assert (await api.request_url(plain_text(900), user="bob")).status_code == 201


async def test_concurrent_requests_cannot_both_take_the_last_bytes(api: Api) -> None:
    responses = await asyncio.gather(*(api.request_url(plain_text(300)) for _ in range(8)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [201] * 3 + [413] * 5
    assert (await _usage(api))["pending_bytes"] == 900


async def test_direct_upload_past_the_quota_leaves_no_object_and_no_row(api: Api) -> None:
    await api.grant(plain_text(900))
    keys = await api.stored_keys()

    response = await api.app_client.put(
        "/v1/uploads/direct?filename=a.txt",
        content=plain_text(200),
        headers={**api.headers(), "Content-Type": "text/plain"},
    )

    assert response.status_code == 413, response.text
    assert response.json()["code"] == "quota_exceeded"
    assert await api.stored_keys() == keys
    assert (await _usage(api))["used_bytes"] == 900


async def test_multipart_start_past_the_quota_leaves_no_open_upload(api: Api) -> None:
    await api.grant(plain_text(900))
    payload = {"filename": "big.txt", "content_type": "text/plain", "size": 200}

    response = await api.app_client.post(
        "/v1/uploads/multipart", json=payload, headers=api.headers()
    )

    assert response.status_code == 413, response.text
    assert await api.resources.storage.list_incomplete_uploads("") == []
    assert await api.open_multipart_keys() == []


async def test_a_streamed_upload_past_the_quota_stops_before_its_end(api: Api) -> None:
    await api.grant(plain_text(900))
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(50):
            sent += 1
            yield plain_text(64 * 1024)

    response = await api.app_client.put(
        "/v1/uploads/direct?filename=a.txt",
        content=body(),
        headers={**api.headers(), "Content-Type": "text/plain"},
    )

    assert response.status_code == 413, response.text
    assert response.json()["code"] == "quota_exceeded"
    assert response.json()["used_bytes"] == 900
    assert sent < 5  # the first chunk already passed the 100 bytes left
    assert len(await api.stored_keys()) == 0


async def test_an_upload_of_undeclared_size_is_refused_at_confirm_past_the_quota(
    api: Api,
) -> None:
    await api.grant(plain_text(900))
    # Uppy's single-request upload declares no size: it only needs room to start.
    params = await api.app_client.get(
        "/v1/s3/params",
        params={"filename": "notes.txt", "type": "text/plain"},
        headers=api.headers(),
    )
    assert params.status_code == 200, params.text
    grant = params.json()
    put = await api.app_client.put(grant["url"], content=plain_text(200), headers=grant["headers"])
    assert put.status_code == 200, put.text

    confirm = await api.confirm(grant["key"])

    assert confirm.status_code == 413, confirm.text
    assert (confirm.json()["used_bytes"], confirm.json()["requested_bytes"]) == (900, 200)
    assert not await api.object_exists(grant["key"])
    assert (await _usage(api))["used_bytes"] == 900
