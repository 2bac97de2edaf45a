"""Import jobs retry transient failures, and only those: real outages, staged with a
TCP proxy in front of the real PostgreSQL or S3 server (closed, then opened again).

On arq (a real worker on Redis, ``burst=True``) a transient failure is a
``Retry`` with a backoff; without Redis the in-process queue does the same.
An archive that cannot be imported fails at once, on its first try.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from arq.worker import Worker
from redis.asyncio import Redis
from sqlalchemy import exc as sa_exc
from sqlalchemy import func, select, text

from tests import samples
from tests.conftest import Api, make_settings, running_api
from tests.openevent_archives import build_zip
from tests.support.localstack import LocalStackServer
from tests.tcp_proxy import TcpProxy
from tests.test_import_worker import REDIS_URL
from uploadsvc.config import Settings
from uploadsvc.db import create_engine
from uploadsvc.job_queue import InProcessQueue
from uploadsvc.models.events import Event, ImportJob
from uploadsvc.services.imports import is_transient
from uploadsvc.workers.settings import create_worker

# Generous bounds on how long anything may take; reaching one is a hang.
HANG_SECONDS = 120

ARCHIVE = build_zip(
    {
        "event": {"name": "Through an outage", "logo": "/images/logo.png"},
        "speakers": [{"id": i, "name": f"Speaker {i}"} for i in range(1, 21)],
        "sessions": [{"id": i, "title": f"Talk {i}", "speakers": [i]} for i in range(1, 21)],
    },
    {"images/logo.png": samples.png()},
)


def _s3(server: LocalStackServer, bucket: str, endpoint: str | None = None) -> dict[str, Any]:
    return {
        "s3_endpoint_url": endpoint or server.endpoint_url,
        "s3_bucket": bucket,
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
        "s3_addressing_style": "path",
    }


def _through(proxy: TcpProxy) -> str:
    return f"http://127.0.0.1:{proxy.port}"


def _port_of(url: str) -> tuple[str, int]:
    parts = urlsplit(url.replace("postgresql+asyncpg", "postgresql"))
    assert parts.hostname is not None, url
    assert parts.port is not None, url
    return parts.hostname, parts.port


async def _empty(api: Api) -> None:
    async with api.resources.engine.begin() as connection:
        await connection.execute(text("TRUNCATE uploads, import_jobs CASCADE"))


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def s3_redis_api(
    tmp_path: Path, postgres_url: str, localstack: LocalStackServer, s3_bucket: str, redis: Redis
) -> AsyncIterator[Api]:
    """The API on PostgreSQL, S3 and Redis, all reached directly."""
    settings = make_settings(
        "pg-s3",
        tmp_path=tmp_path,
        database_url=postgres_url,
        redis_url=REDIS_URL,
        **_s3(localstack, s3_bucket),
    )
    async with running_api(settings, "pg-s3") as api:
        yield api
        await _empty(api)


class BurstWorker:
    """A real arq worker (``burst=True``) run as a task: it ends once the queue is empty."""

    def __init__(self, settings: Settings) -> None:
        self.worker: Worker = create_worker(
            settings, burst=True, handle_signals=False, poll_delay=0.05
        )
        self.task = asyncio.create_task(self._main())

    async def _main(self) -> None:
        try:
            await self.worker.main()
        finally:
            await self.worker.close()

    def running(self) -> bool:
        """True while the worker runs; its error if it stopped with one."""
        if self.task.done():
            self.task.result()
            return False
        return True

    async def finished(self) -> None:
        await asyncio.wait_for(asyncio.shield(self.task), HANG_SECONDS)


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = asyncio.get_running_loop().time() + HANG_SECONDS
    while asyncio.get_running_loop().time() < deadline:
        if await condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"no {what} within {HANG_SECONDS} s")


async def _post(api: Api, archive: bytes = ARCHIVE) -> str:
    response = await api.app_client.post(
        "/v1/events/import/json",
        files={"file": ("event.zip", archive, "application/zip")},
        headers=api.headers(),
    )
    assert response.status_code == 202, response.text
    task_id: str = response.json()["task_id"]
    return task_id


async def _task(api: Api, task_id: str) -> dict[str, Any]:
    response = await api.app_client.get(f"/v1/tasks/{task_id}", headers=api.headers())
    assert response.status_code == 200, response.text
    task: dict[str, Any] = response.json()
    return task


async def _job(api: Api, task_id: str) -> ImportJob:
    async with api.resources.session_factory() as session:
        job = await session.get(ImportJob, uuid.UUID(task_id))
    assert job is not None
    return job


async def _events(api: Api) -> int:
    async with api.resources.session_factory() as session:
        return int(await session.scalar(select(func.count()).select_from(Event)) or 0)


async def test_an_import_on_arq_outlasts_a_storage_outage(
    s3_redis_api: Api, localstack: LocalStackServer
) -> None:
    api = s3_redis_api
    proxy = await TcpProxy.start(*_port_of(localstack.endpoint_url))
    try:
        worker_settings = api.settings.model_copy(update={"s3_endpoint_url": _through(proxy)})
        task_id = await _post(api)
        await proxy.close()
        worker = BurstWorker(worker_settings)

        async def retried_twice() -> bool:
            return worker.running() and worker.worker.jobs_retried >= 2

        # Two runs met the outage and asked to be tried again; none gave up.
        await _until(retried_twice, "two retries")
        assert (await _task(api, task_id))["state"] == "STARTED"
        retried = worker.worker.jobs_retried
        await proxy.open()
        await worker.finished()
    finally:
        await proxy.close()

    task = await _task(api, task_id)
    assert task["state"] == "SUCCESS", task
    assert task["result"]["counts"]["sessions"] == 20
    assert await _events(api) == 1
    # The try after the recovery succeeded (one more may have been under way then).
    assert worker.worker.jobs_retried <= retried + 1
    assert retried + 1 <= (await _job(api, task_id)).attempts <= retried + 2
    event = (
        await api.app_client.get(f"/v1/events/{task['result']['id']}", headers=api.headers())
    ).json()
    assert await api.object_exists(event["logo_key"])
    assert proxy.connections > 0, "the worker reached storage through the proxy"


async def test_an_import_on_arq_outlasts_a_database_outage(
    s3_redis_api: Api, postgres_url: str
) -> None:
    api = s3_redis_api
    proxy = await TcpProxy.start(*_port_of(postgres_url))
    try:
        host, port = _port_of(postgres_url)
        worker_settings = api.settings.model_copy(
            update={
                "database_url": postgres_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}")
            }
        )
        task_id = await _post(api)
        await proxy.close()
        worker = BurstWorker(worker_settings)

        async def retried() -> bool:
            return worker.running() and worker.worker.jobs_retried >= 2

        await _until(retried, "two retries")
        # The database never saw those runs start.
        assert (await _task(api, task_id))["state"] == "PENDING"
        retried_before = worker.worker.jobs_retried
        await proxy.open()
        await worker.finished()
    finally:
        await proxy.close()

    task = await _task(api, task_id)
    assert task["state"] == "SUCCESS", task
    assert await _events(api) == 1
    assert (await _job(api, task_id)).attempts == 1
    assert worker.worker.jobs_retried <= retried_before + 1


async def test_an_import_on_arq_stopped_by_its_deadline_is_retried(
    s3_redis_api: Api, localstack: LocalStackServer
) -> None:
    api = s3_redis_api
    proxy = await TcpProxy.start(*_port_of(localstack.endpoint_url))
    try:
        # Storage accepts connections and then says nothing: only the job's
        # deadline (well below botocore's read timeout) ends the run.
        worker_settings = api.settings.model_copy(
            update={"s3_endpoint_url": _through(proxy), "job_timeout_seconds": 2}
        )
        task_id = await _post(api)
        proxy.pause()
        worker = BurstWorker(worker_settings)

        async def retried() -> bool:
            return worker.running() and worker.worker.jobs_retried >= 1

        await _until(retried, "a retry")
        # arq did not cancel the run (which would not be retried): it stopped itself.
        assert worker.worker.jobs_failed == 0
        assert (await _task(api, task_id))["state"] == "STARTED"
        proxy.resume()
        await worker.finished()
    finally:
        await proxy.close()
    task = await _task(api, task_id)
    assert task["state"] == "SUCCESS", task
    assert await _events(api) == 1


def _broken_archive(dialect: str) -> bytes:
    key = "session-types" if dialect == "kebab" else "session_types"
    return build_zip(
        {
            "event": {"name": f"Broken {dialect}"},
            "tracks": [{"id": 1, "name": "Main"}],
            # The file's name is the same in both dialects; its keys are not.
            "session_types": f'[{{"id": 1, "name": "Talk", "{key}": 1}}, {{"id": 2,',
        }
    )


@pytest.mark.parametrize("dialect", ["kebab", "snake"])
async def test_an_archive_error_fails_on_arq_without_a_retry(
    s3_redis_api: Api, dialect: str
) -> None:
    api = s3_redis_api
    task_id = await _post(api, _broken_archive(dialect))
    worker = BurstWorker(api.settings)
    await worker.finished()
    task = await _task(api, task_id)
    assert task["state"] == "FAILURE", task
    assert worker.worker.jobs_retried == 0
    assert (await _job(api, task_id)).attempts == 1
    assert task["error"]["file"] == "session_types"
    assert "invalid JSON" in task["error"]["message"]
    assert task["result"] == task["error"]["message"]
    assert task["progress"]["stage"] == "session_types"
    assert await _events(api) == 0


@pytest.fixture
async def proxied_s3_api(
    tmp_path: Path, postgres_url: str, localstack: LocalStackServer, s3_bucket: str
) -> AsyncIterator[tuple[Api, TcpProxy]]:
    """The API without Redis (jobs in-process), reaching S3 only through a proxy."""
    proxy = await TcpProxy.start(*_port_of(localstack.endpoint_url))
    settings = make_settings(
        "pg-s3",
        tmp_path=tmp_path,
        database_url=postgres_url,
        **_s3(localstack, s3_bucket, _through(proxy)),
    )
    try:
        async with running_api(settings, "pg-s3") as api:
            yield api, proxy
            await proxy.open()
            await _empty(api)
    finally:
        await proxy.close()


async def test_an_in_process_import_outlasts_a_storage_outage(
    proxied_s3_api: tuple[Api, TcpProxy],
) -> None:
    api, proxy = proxied_s3_api
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    grant = await api.request_url(
        ARCHIVE, filename="e.zip", content_type="application/zip", purpose="event-import"
    )
    assert grant.status_code == 201, grant.text
    assert (await api.put(grant.json(), ARCHIVE)).status_code == 200
    assert (await api.confirm(grant.json()["file_key"])).status_code == 200
    await proxy.close()
    response = await api.app_client.post(
        "/v1/events/import", json={"file_key": grant.json()["file_key"]}, headers=api.headers()
    )
    assert response.status_code == 202, response.text
    task_id = response.json()["task_id"]

    async def retried_twice() -> bool:
        return queue.jobs_retried >= 2

    await _until(retried_twice, "two retries")
    assert (await _task(api, task_id))["state"] == "STARTED"
    retried = queue.jobs_retried
    await proxy.open()
    await asyncio.wait_for(queue.wait_idle(), HANG_SECONDS)
    task = await _task(api, task_id)
    assert task["state"] == "SUCCESS", task
    assert await _events(api) == 1
    # The try after the recovery succeeded (one more may have been under way then).
    assert queue.jobs_retried <= retried + 1
    assert retried + 1 <= (await _job(api, task_id)).attempts <= retried + 2


async def test_a_database_connection_lost_midway_is_transient_and_bad_sql_is_not(
    postgres_url: str, tmp_path: Path
) -> None:
    """What the job's classification sees from a real asyncpg connection."""
    proxy = await TcpProxy.start(*_port_of(postgres_url))
    host, port = _port_of(postgres_url)
    settings = make_settings(
        "pg-local",
        tmp_path=tmp_path,
        database_url=postgres_url.replace(f"{host}:{port}", f"127.0.0.1:{proxy.port}"),
    )
    engine = create_engine(settings)
    try:
        async with engine.connect() as connection:
            with pytest.raises(sa_exc.ProgrammingError) as bad_sql:
                await connection.execute(text("SELECT * FROM no_such_table"))
            assert not is_transient(bad_sql.value)
            await connection.rollback()
            await connection.execute(text("SELECT 1"))
            await proxy.close()
            with pytest.raises(Exception) as lost:  # noqa: PT011 - which one is the point
                await connection.execute(text("SELECT 1"))
            assert is_transient(lost.value), repr(lost.value)
        with pytest.raises(Exception) as refused:  # noqa: PT011
            async with engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        assert is_transient(refused.value), repr(refused.value)
    finally:
        await engine.dispose()
        await proxy.close()
