"""Image variants made by a real arq worker on Redis, enqueued after the confirm commits."""

from __future__ import annotations

import io
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image
from redis.asyncio import Redis

from tests.conftest import Api, make_settings, running_api
from tests.test_image_variants import jpeg_rotated_with_gps
from uploadsvc.job_queue import ArqQueue
from uploadsvc.workers.settings import create_worker

# This checkout's own Redis database: the test flushes it.
REDIS_URL = os.environ.get("UPLOADSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
async def redis_api(tmp_path: Path, postgres_url: str) -> AsyncIterator[Api]:
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    settings = make_settings(
        "pg-local", tmp_path=tmp_path, database_url=postgres_url, redis_url=REDIS_URL
    )
    async with running_api(settings, "pg-local") as api:
        yield api
        async with api.resources.engine.begin() as connection:
            from sqlalchemy import text

            await connection.execute(text("TRUNCATE uploads CASCADE"))
    await redis.flushdb()
    await redis.aclose()


async def test_arq_worker_makes_the_variants_of_a_confirmed_jpeg(redis_api: Api) -> None:
    api = redis_api
    assert isinstance(api.resources.jobs, ArqQueue)
    confirmed = await api.upload(
        jpeg_rotated_with_gps(), filename="photo.jpg", content_type="image/jpeg"
    )
    file_id = confirmed["file_id"]
    before = await api.app_client.get(f"/v1/files/{file_id}/variants", headers=api.headers())
    assert {item["status"] for item in before.json()["items"]} == {"pending"}

    worker = create_worker(api.settings, burst=True, handle_signals=False, poll_delay=0.05)
    try:
        await worker.main()
    finally:
        await worker.close()

    after = await api.app_client.get(f"/v1/files/{file_id}/variants", headers=api.headers())
    variants = {item["name"]: item for item in after.json()["items"]}
    assert {v["status"] for v in variants.values()} == {"ready"}
    icon = await api.app_client.get(variants["icon"]["download_url"])
    image = Image.open(io.BytesIO(icon.content))
    assert image.size == (48, 64)
    assert len(image.getexif()) == 0
