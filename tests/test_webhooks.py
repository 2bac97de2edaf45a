"""Webhooks: signed as Standard Webhooks says, sent after the commit, retried, attempts recorded."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from tests.conftest import Api, make_settings, running_api
from tests.support.files import plain_text, zip_archive
from tests.support.webhooks import (  # noqa: F401 - receiver_fixture is the `receiver` fixture
    Receiver,
    receiver_fixture,
    webhook_settings,
)
from tests.test_imports import import_zip
from tests.test_metrics import scrape, value
from uploadsvc.cli import run_migrations
from uploadsvc.example_archive import EVENT_NAME, build_example_archive
from uploadsvc.job_queue import InProcessQueue
from uploadsvc.services.webhooks import reconcile_webhooks
from uploadsvc.workers.settings import create_worker

QUOTA = 10_000  # room for an example archive

BOTH = pytest.mark.parametrize("backend", ["pg-local", "sqlite-local"])
# This checkout's Redis database that tests may flush.
FLUSHABLE_REDIS_URL = os.environ.get(
    "UPLOADSVC_TEST_REDIS_FLUSHABLE_URL", "redis://127.0.0.1:6379/13"
)


@pytest.fixture
def settings_overrides(receiver: Receiver) -> dict[str, Any]:
    return {**webhook_settings(receiver), "user_quota_bytes": QUOTA}


async def _jobs_done(api: Api) -> None:
    assert isinstance(api.resources.jobs, InProcessQueue)
    await api.resources.jobs.wait_idle()


async def _deliveries(api: Api) -> list[dict[str, Any]]:
    response = await api.app_client.get(
        "/v1/webhooks/deliveries", headers=api.headers("root", admin=True)
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


@BOTH
async def test_a_confirmed_file_is_announced_once_after_two_500s(
    api: Api, receiver: Receiver
) -> None:
    receiver.statuses = [500, 500]
    before = await scrape(api)

    confirmed = await api.upload(plain_text(64))
    await _jobs_done(api)

    # Three attempts of one message: the same webhook-id, each verifiable.
    events = receiver.events()
    assert [event["type"] for event in events] == ["file.confirmed"] * 3
    assert events[0]["data"]["file_id"] == confirmed["file_id"]
    assert len({headers["webhook-id"] for headers, _ in receiver.received}) == 1
    [delivery] = await _deliveries(api)
    assert delivery["id"] == receiver.received[0][0]["webhook-id"]
    assert delivery["status"] == "delivered"
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [500, 500, 204]
    after, name = await scrape(api), "uploadsvc_webhook_attempts_total"
    moved = {
        outcome: value(after, name, event_type="file.confirmed", outcome=outcome)
        - value(before, name, event_type="file.confirmed", outcome=outcome)
        for outcome in ("retried", "delivered", "failed")
    }
    assert moved == {"retried": 2, "delivered": 1, "failed": 0}
    # Delivered means done: the reconciler sends it no more.
    assert await reconcile_webhooks(api.resources, older_than=dt.timedelta(0)) == 0


@BOTH
async def test_a_receiver_that_keeps_failing_ends_failed_after_the_last_attempt(
    api: Api, receiver: Receiver
) -> None:
    receiver.statuses = [503] * 10

    await api.upload(plain_text(64))
    await _jobs_done(api)

    assert len(receiver.received) == 3
    [delivery] = await _deliveries(api)
    assert delivery["status"] == "failed"
    assert [attempt["error"] for attempt in delivery["attempts"]] == ["HTTP 503"] * 3


@BOTH
async def test_rejections_and_deletions_are_sent_and_only_admins_see_deliveries(
    api: Api, receiver: Receiver
) -> None:
    kept = await api.upload(plain_text(64))
    grant = await api.grant(plain_text(64))
    await api.plant(grant["file_key"], plain_text(65), "text/plain")
    assert (await api.confirm(grant["file_key"])).status_code == 422
    deleted = await api.app_client.delete(f"/v1/files/{kept['file_id']}", headers=api.headers())
    assert deleted.status_code == 204
    # Sent although the rejection answers 422 (its request rolls back): the
    # rejection was committed, and so was its delivery.
    await _jobs_done(api)

    by_type = {event["type"]: event["data"] for event in receiver.events()}
    assert set(by_type) == {"file.confirmed", "upload.rejected", "file.deleted"}
    assert by_type["upload.rejected"]["reason"] == "size_mismatch"
    assert by_type["file.deleted"]["file_id"] == kept["file_id"]
    forbidden = await api.app_client.get("/v1/webhooks/deliveries", headers=api.headers())
    assert forbidden.status_code == 403


@BOTH
async def test_an_import_job_announces_its_outcome_after_its_commit(
    api: Api, receiver: Receiver
) -> None:
    succeeded = await import_zip(api, build_example_archive())
    failed = await import_zip(api, zip_archive())

    by_type = {event["type"]: event["data"] for event in receiver.events()}
    assert set(by_type) == {"file.confirmed", "import.succeeded", "import.failed"}
    assert by_type["import.succeeded"]["task_id"] == succeeded["task_id"]
    assert by_type["import.succeeded"]["result"]["event_name"] == EVENT_NAME
    assert by_type["import.failed"]["task_id"] == failed["task_id"]
    assert by_type["import.failed"]["error"]["message"] == failed["error"]["message"]


@BOTH
async def test_an_upload_that_rolls_back_announces_nothing(api: Api, receiver: Receiver) -> None:
    # Streamed and staged with its event, then refused at the commit (quota).
    response = await api.app_client.put(
        "/v1/uploads/direct?filename=a.txt",
        content=plain_text(QUOTA + 1),
        headers={**api.headers(), "Content-Type": "text/plain"},
    )
    assert response.status_code == 413
    await reconcile_webhooks(api.resources, older_than=dt.timedelta(0))
    await _jobs_done(api)

    assert receiver.received == []
    assert await _deliveries(api) == []


async def test_the_arq_worker_delivers_after_the_commit_and_retries(
    tmp_path: Path, receiver: Receiver
) -> None:
    redis = Redis.from_url(FLUSHABLE_REDIS_URL)
    await redis.flushdb()
    settings = make_settings(
        "sqlite-local",
        tmp_path=tmp_path,
        redis_url=FLUSHABLE_REDIS_URL,
        **webhook_settings(receiver),
    )
    await asyncio.to_thread(run_migrations, settings)
    receiver.statuses = [500, 500]
    try:
        async with running_api(settings) as api:
            confirmed = await api.upload(plain_text(64))
            assert receiver.received == []  # queued in Redis, not sent by the API
            worker = create_worker(settings, burst=True, handle_signals=False, poll_delay=0.01)
            try:
                await worker.main()
            finally:
                await worker.close()
            [delivery] = await _deliveries(api)
    finally:
        await redis.flushdb()
        await redis.aclose()

    assert [event["data"]["file_id"] for event in receiver.events()] == [confirmed["file_id"]] * 3
    assert delivery["status"] == "delivered"
    assert [attempt["status_code"] for attempt in delivery["attempts"]] == [500, 500, 204]
