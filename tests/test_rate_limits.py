"""Per-user rate limits: 429 with Retry-After and RateLimit headers, in Redis, failing open."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TEST_REDIS_URL, Api, make_settings, running_api
from tests.service_process import sqlite_local_values
from tests.support.files import plain_text
from tests.support.servers import free_loopback_port, start_uploadsvc, uploadsvc_env
from tests.test_metrics import scrape, value
from uploadsvc.cli import run_migrations
from uploadsvc.config import Settings

SQLITE = pytest.mark.parametrize("backend", ["sqlite-local"])


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"rate_limit_upload_urls": "2/minute", "rate_limit_direct_uploads": "1/minute"}


@SQLITE
async def test_the_third_url_in_a_minute_is_429_with_retry_after(api: Api) -> None:
    before = await scrape(api)
    first, second, third = [await api.request_url(b"hello") for _ in range(3)]

    assert (first.status_code, second.status_code) == (201, 201)
    assert first.headers["RateLimit-Limit"] == "2"
    assert (first.headers["RateLimit-Remaining"], second.headers["RateLimit-Remaining"]) == (
        "1",
        "0",
    )
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert third.json()["code"] == "rate_limited"
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    assert third.headers["RateLimit-Remaining"] == "0"
    refused = "uploadsvc_rate_limited_total"
    after = await scrape(api)
    assert (
        value(after, refused, route_class="upload_urls")
        - value(before, refused, route_class="upload_urls")
        == 1
    )
    assert await api.row_count() == 2
    # Per user: another user still has their own two.
    assert (await api.request_url(b"hello", user="bob")).status_code == 201


@SQLITE
async def test_a_refused_direct_upload_stores_nothing(api: Api) -> None:
    async def put() -> int:
        response = await api.app_client.put(
            "/v1/uploads/direct?filename=a.txt",
            content=plain_text(100),
            headers={**api.headers(), "Content-Type": "text/plain"},
        )
        return response.status_code

    assert await put() == 201
    keys = await api.stored_keys()

    assert await put() == 429
    assert await api.stored_keys() == keys


async def _redis_settings(tmp_path: Path, redis_url: str) -> Settings:
    settings = make_settings(
        "sqlite-local", tmp_path=tmp_path, redis_url=redis_url, rate_limit_upload_urls="3/minute"
    )
    # Alembic's env.py runs its own event loop.
    await asyncio.to_thread(run_migrations, settings)
    return settings


async def test_the_limit_holds_across_two_api_processes_sharing_redis(tmp_path: Path) -> None:
    settings = await _redis_settings(tmp_path, TEST_REDIS_URL)
    port = free_loopback_port()
    values = sqlite_local_values(
        tmp_path, port, redis_url=TEST_REDIS_URL, rate_limit_upload_urls="3/minute"
    )
    user = f"shared-{uuid.uuid4().hex}"  # a fresh counter, without flushing the database
    payload = {"filename": "notes.txt", "content_type": "text/plain", "size": 5}
    statuses = []
    # The in-process app first: entering it prepares the local storage both use.
    async with running_api(settings) as here:
        served = start_uploadsvc("serve", port=port, env=uploadsvc_env(values), workdir=tmp_path)
        try:
            async with httpx.AsyncClient(base_url=served.base_url) as there:
                for client in (here.app_client, there, here.app_client, there, here.app_client):
                    response = await client.post(
                        "/v1/uploads/request-url", json=payload, headers=here.headers(user)
                    )
                    statuses.append(response.status_code)
        finally:
            served.stop()

    # One budget of three for the user, whichever process answers.
    assert statuses == [201, 201, 201, 429, 429]


async def test_redis_down_lets_requests_through_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = await _redis_settings(tmp_path, f"redis://127.0.0.1:{free_loopback_port()}/0")
    caplog.set_level(logging.WARNING, logger="uploadsvc.rate_limits")
    async with running_api(settings) as api:
        statuses = [(await api.request_url(b"hello")).status_code for _ in range(4)]

    assert statuses == [201] * 4
    assert [r.message for r in caplog.records if "rate limits not enforced" in r.message]
