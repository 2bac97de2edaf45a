"""Shared fixtures: real PostgreSQL, real S3 (LocalStack, strict) and the app.

Every test that talks to the API gets an ``Api`` built from one of three
setups (``BACKENDS``): PostgreSQL + S3 over HTTP, PostgreSQL + the local
backend, SQLite + the local backend. The app runs in-process behind
``httpx.ASGITransport``; requests to any other host (the S3 server) go over
real HTTP, so presigned URLs are used exactly as a client would use them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from tests.support import REPO_ROOT
from tests.support.localstack import LocalStackServer, start_localstack
from tests.support.tokens import bearer
from uploadsvc.app import create_app
from uploadsvc.cli import run_migrations
from uploadsvc.config import Settings
from uploadsvc.models.multipart_ledger import OpenMultipartUpload
from uploadsvc.models.uploads import Upload
from uploadsvc.profiles import UPLOAD_PREFIXES
from uploadsvc.resources import Resources
from uploadsvc.security import mint_token
from uploadsvc.storage.base import PutGrant

APP_BASE_URL = "http://uploadsvc.test"
TEST_JWT_SECRET = "test-jwt-secret-0123456789abcdef0123456789"
TEST_SIGNING_SECRET = "test-signing-secret-0123456789abcdef"
DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _take_redis_databases_of_this_worker() -> None:
    """Give each ``pytest -n`` worker Redis database numbers of its own.

    Tests flush their database and run arq workers on shared queue names, so two
    workers on one database would take each other's jobs. Worker ``gwN`` counts
    up from the shared database and down from the flushable one; the variables
    are set here, before any test module reads them.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw"):
        return
    index = int(worker[2:])
    for variable, default_db, step in (
        ("UPLOADSVC_TEST_REDIS_URL", 0, 1),
        ("UPLOADSVC_TEST_REDIS_FLUSHABLE_URL", 13, -1),
    ):
        server, _, db = os.environ.get(variable, f"redis://127.0.0.1:6379/{default_db}").rpartition(
            "/"
        )
        os.environ[variable] = f"{server}/{int(db) + step * index}"


_take_redis_databases_of_this_worker()
# Tests that run at the same time on one machine each take a database number of their own.
TEST_REDIS_URL = os.environ.get("UPLOADSVC_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")

BACKENDS = ["pg-s3", "pg-local", "sqlite-local"]


@pytest.fixture(scope="session", autouse=True)
def development_unless_said() -> Iterator[None]:
    """Settings built here without ``env=`` are development, as tests have always assumed.

    The service itself defaults to production; tests of production say
    ``env="production"`` (which beats the variable), and the processes tests
    start get an environment of their own.
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("UPLOADSVC_ENV", "development")
        yield


@pytest.fixture(scope="session")
async def postgres_url() -> AsyncIterator[str]:
    """A fresh database for this test session, migrated with Alembic, dropped at the end."""
    admin_url = os.environ.get("UPLOADSVC_TEST_DATABASE_URL", DEFAULT_PG_URL)
    name = f"uploadsvc_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    await _admin_sql(admin_url, f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    # Alembic's env.py runs its own event loop: give it a thread of its own.
    await asyncio.to_thread(run_migrations, Settings(_env_file=None, database_url=url))
    yield url
    await _admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def _admin_sql(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def localstack() -> Iterator[LocalStackServer]:
    server = start_localstack(REPO_ROOT)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket() -> str:
    # A bucket per test: listings (cleanup) see only that test's objects.
    return f"uploadsvc-test-{uuid.uuid4().hex[:12]}"


def make_settings(backend: str, *, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings for one of BACKENDS; S3 and PostgreSQL details come from ``overrides``."""
    values: dict[str, Any] = {
        "env": "development",
        "jwt_secret": TEST_JWT_SECRET,
        "signing_secret": TEST_SIGNING_SECRET,
        "public_base_url": APP_BASE_URL,
        "local_storage_dir": tmp_path / "storage",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'uploadsvc.db'}",
        "storage_backend": "s3" if backend.endswith("-s3") else "local",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Api:
    """The app under test and a client that reaches it and the S3 server."""

    app_client: httpx.AsyncClient
    resources: Resources
    settings: Settings
    backend: str

    def headers(self, user: str = "alice", *, admin: bool = False) -> dict[str, str]:
        return bearer(mint_token(self.settings, sub=user, admin=admin))

    async def request_url(
        self, body: bytes, *, user: str = "alice", content_type: str = "text/plain", **fields: Any
    ) -> httpx.Response:
        payload = {"filename": "notes.txt", "content_type": content_type, "size": len(body)}
        payload.update(fields)
        return await self.app_client.post(
            "/v1/uploads/request-url", json=payload, headers=self.headers(user)
        )

    async def grant(self, body: bytes, *, user: str = "alice", **fields: Any) -> dict[str, Any]:
        """A presigned upload of ``body`` granted (201); its body."""
        response = await self.request_url(body, user=user, **fields)
        assert response.status_code == 201, response.text
        granted: dict[str, Any] = response.json()
        return granted

    async def put(
        self, grant: dict[str, Any], body: bytes, **header_changes: str
    ) -> httpx.Response:
        """PUT ``body`` to a presigned URL with its signed headers (plus changes)."""
        headers = {**grant["headers"], **header_changes}
        return await self.app_client.put(grant["upload_url"], content=body, headers=headers)

    async def confirm(self, file_key: str, *, user: str = "alice") -> httpx.Response:
        return await self.app_client.post(
            "/v1/uploads/confirm", json={"file_key": file_key}, headers=self.headers(user)
        )

    async def upload(self, body: bytes, *, user: str = "alice", **fields: Any) -> dict[str, Any]:
        """The whole happy path; returns the confirm body."""
        grant = await self.grant(body, user=user, **fields)
        put = await self.put(grant, body)
        assert put.status_code == 200, put.text
        confirmed = await self.confirm(grant["file_key"], user=user)
        assert confirmed.status_code == 200, confirmed.text
        result: dict[str, Any] = confirmed.json()
        return result

    async def plant(self, key: str, body: bytes, content_type: str) -> None:
        """Write an object straight into storage, bypassing the declared size."""
        grant = await self.resources.storage.presign_put(
            PutGrant(key, content_type, len(body), sha256=None, expires_in=60)
        )
        response = await self.app_client.put(grant.url, content=body, headers=grant.headers)
        assert response.status_code == 200, response.text

    async def stored_keys(self) -> list[str]:
        """Every object under the upload prefixes."""
        keys: list[str] = []
        for prefix in UPLOAD_PREFIXES:
            async for page in self.resources.storage.list_pages(prefix):
                keys.extend(listed.key for listed in page)
        return keys

    async def row_count(self) -> int:
        async with self.resources.session_factory() as session:
            return int(await session.scalar(select(func.count()).select_from(Upload)) or 0)

    async def open_multipart_keys(self) -> list[str]:
        """The multipart ledger: keys where storage may hold an incomplete upload."""
        async with self.resources.session_factory() as session:
            return list(await session.scalars(select(OpenMultipartUpload.key)))

    async def assert_nothing_left(self) -> None:
        """No row, no object, no incomplete multipart upload, no temporary file."""
        assert await self.row_count() == 0
        assert await self.stored_keys() == []
        assert await self.resources.storage.list_incomplete_uploads("") == []
        assert await self.open_multipart_keys() == []
        tmp = self.settings.local_storage_dir / "tmp"
        if self.settings.storage_backend == "local" and tmp.exists():
            assert list(tmp.iterdir()) == []

    async def object_exists(self, key: str) -> bool:
        return await self.resources.storage.head(key) is not None

    async def status_of(self, upload_id: str) -> str:
        async with self.resources.session_factory() as session:
            status = await session.scalar(
                select(Upload.status).where(Upload.id == uuid.UUID(upload_id))
            )
        return str(status)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def backend_overrides(backend: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    """Database and S3 settings of a backend; starts only the servers it needs."""
    overrides: dict[str, Any] = {}
    if backend.startswith("pg"):
        overrides["database_url"] = request.getfixturevalue("postgres_url")
    if backend.endswith("s3"):
        server: LocalStackServer = request.getfixturevalue("localstack")
        overrides.update(
            s3_endpoint_url=server.endpoint_url,
            s3_bucket=request.getfixturevalue("s3_bucket"),
            s3_access_key_id="test",
            # LocalStack verifies presigned URLs with the secret "test" only.
            s3_secret_access_key="test",
            s3_addressing_style="path",
        )
    return overrides


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    """Override in a test module to change settings (limits, expiry...)."""
    return {}


@pytest.fixture
async def api(
    backend: str,
    backend_overrides: dict[str, Any],
    settings_overrides: dict[str, Any],
    tmp_path: Path,
) -> AsyncIterator[Api]:
    settings = make_settings(
        backend, tmp_path=tmp_path, **{**backend_overrides, **settings_overrides}
    )
    if settings.uses_sqlite:
        await asyncio.to_thread(run_migrations, settings)
    async with running_api(settings, backend) as running:
        yield running
        if backend.startswith("pg"):
            async with running.resources.engine.begin() as connection:
                await empty_shared_database(connection)


async def empty_shared_database(connection: AsyncConnection) -> None:
    """Leave the session's PostgreSQL database as the next test expects it."""
    await connection.execute(
        text("TRUNCATE uploads, cleanup_runs, import_jobs, open_multipart_uploads CASCADE")
    )
    # A test that stopped mid-run must not leave the cleanup lease held.
    await connection.execute(
        text("UPDATE leases SET holder = NULL, expires_at = '2000-01-01T00:00:00Z'")
    )


class running_api:
    """The app with its lifespan entered and a client routed to it."""

    def __init__(self, settings: Settings, backend: str = "custom") -> None:
        self.settings = settings
        self.backend = backend
        self._app = create_app(settings)
        self._lifespan: Any = None
        self._client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> Api:
        self._lifespan = self._app.router.lifespan_context(self._app)
        await self._lifespan.__aenter__()
        resources: Resources = self._app.state.resources
        await resources.storage.initialize(cors_origins=[])
        self._client = httpx.AsyncClient(
            base_url=APP_BASE_URL,
            mounts={
                APP_BASE_URL: httpx.ASGITransport(app=self._app),
                "all://": httpx.AsyncHTTPTransport(),
            },
            timeout=30,
        )
        return Api(self._client, resources, self.settings, self.backend)

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._client is not None
        await self._client.aclose()
        await self._lifespan.__aexit__(*exc_info)
