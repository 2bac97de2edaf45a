"""A client generated from the running service's OpenAPI document works unedited.

Each test starts a real ``uploadsvc serve`` on a loopback port, fetches its
``/openapi.json``, generates a Python client from it with
``openapi-python-client`` (as an API user would, at test time, offline) and
imports the generated package as it is. The upload flow then runs through the
generated functions; only the PUT to storage uses plain httpx, since the
presigned URL is storage's API, not the service's.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import TEST_JWT_SECRET, TEST_SIGNING_SECRET, empty_shared_database
from tests.support.files import data_uri, png, sha256_b64
from tests.support.servers import free_loopback_port, start_uploadsvc, uploadsvc_env
from uploadsvc.cli import run_migrations
from uploadsvc.config import Settings
from uploadsvc.security import mint_token
from uploadsvc.storage import open_storage

# No post-hooks: they would run ruff over the generated code, which only
# formats it; the code is used exactly as generated.
GENERATOR_CONFIG = "post_hooks: []\n"
GENERATED_FUNCTIONS = ("sync", "sync_detailed", "asyncio", "asyncio_detailed")


@dataclass
class Service:
    """A running ``uploadsvc serve`` process."""

    base_url: str
    settings: Settings


@dataclass
class GeneratedClient:
    """The generated package, imported, and the document it was generated from."""

    package: str
    directory: Path
    document: dict[str, Any]
    output: str

    def module(self, name: str) -> Any:
        return importlib.import_module(f"{self.package}.{name}")


def _environment(settings: Settings) -> dict[str, str]:
    """The UPLOADSVC_* variables that configure a process exactly like ``settings``."""
    values: dict[str, str] = {}
    for name in settings.model_fields_set:
        value = getattr(settings, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        assert isinstance(value, str | Path | int), (name, value)
        values[name] = str(value)
    return uploadsvc_env(values)


@pytest.fixture
async def service_settings(
    backend: str, backend_overrides: dict[str, Any], tmp_path: Path
) -> AsyncIterator[Settings]:
    """Settings of the served process; its database migrated and its bucket created."""
    port = free_loopback_port()
    values: dict[str, Any] = {
        "env": "development",
        "host": "127.0.0.1",
        "port": port,
        "jwt_secret": TEST_JWT_SECRET,
        "signing_secret": TEST_SIGNING_SECRET,
        # Local storage URLs point at the served process itself.
        "public_base_url": f"http://127.0.0.1:{port}",
        "local_storage_dir": tmp_path / "storage",
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'uploadsvc.db'}",
        "storage_backend": "s3" if backend.endswith("-s3") else "local",
    }
    settings = Settings(_env_file=None, **{**values, **backend_overrides})
    if settings.uses_sqlite:
        # Alembic's env.py runs its own event loop: it needs a thread of its own.
        await asyncio.to_thread(run_migrations, settings)
    async with open_storage(settings) as storage:
        await storage.initialize(cors_origins=[])
    yield settings
    if not settings.uses_sqlite:
        # The session's PostgreSQL database is shared: leave it as the api fixture does.
        engine = create_async_engine(settings.database_url)
        try:
            async with engine.begin() as connection:
                await empty_shared_database(connection)
        finally:
            await engine.dispose()


@pytest.fixture
def service(service_settings: Settings, tmp_path: Path) -> Iterator[Service]:
    """``uploadsvc serve`` on 127.0.0.1, configured by the environment only; stopped after."""
    with start_uploadsvc(
        "serve",
        port=service_settings.port,
        env=_environment(service_settings),
        workdir=tmp_path,
    ) as server:
        yield Service(server.base_url, service_settings)


@pytest.fixture
def generated(service: Service, tmp_path: Path) -> Iterator[GeneratedClient]:
    """A client generated from the service's own /openapi.json, imported unedited."""
    response = httpx.get(f"{service.base_url}/openapi.json", timeout=10)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    (tmp_path / "openapi.json").write_text(response.text)
    (tmp_path / "generator.yaml").write_text(GENERATOR_CONFIG)
    # A fresh name per test: two generated packages must not meet in sys.modules.
    package = f"uploadsvc_client_{uuid.uuid4().hex[:8]}"
    directory = tmp_path / "generated"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "openapi_python_client",
            "generate",
            "--path",
            str(tmp_path / "openapi.json"),
            "--output-path",
            str(directory / package),
            "--meta",
            "none",
            "--config",
            str(tmp_path / "generator.yaml"),
            "--fail-on-warning",
        ],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    sys.path.insert(0, str(directory))
    try:
        importlib.import_module(package)
        yield GeneratedClient(package, directory / package, document, output)
    finally:
        sys.path.remove(str(directory))
        for name in [m for m in sys.modules if m == package or m.startswith(f"{package}.")]:
            del sys.modules[name]


def _assert_generated_cleanly_for_every_operation(generated: GeneratedClient) -> None:
    """No warning from the generator, and a module with its four functions per operation."""
    # The generator warns about every endpoint, body or response it skips or
    # cannot type (--fail-on-warning already turned those into a failure).
    assert "warning" not in generated.output.lower(), generated.output
    assert "skipping" not in generated.output.lower(), generated.output
    operations = {
        operation["operationId"]
        for item in generated.document["paths"].values()
        for operation in item.values()
    }
    modules = {
        module.stem: module.parent.name
        for module in (generated.directory / "api").rglob("*.py")
        if module.name != "__init__.py"
    }
    assert set(modules) == operations
    for operation_id, tag in modules.items():
        module = generated.module(f"api.{tag}.{operation_id}")
        for function in GENERATED_FUNCTIONS:
            assert callable(getattr(module, function, None)), (operation_id, function)


@pytest.mark.parametrize("backend", ["pg-s3", "sqlite-local"])
async def test_generated_client_works_unedited_against_the_running_service(
    generated: GeneratedClient, service: Service, tmp_path: Path
) -> None:
    """Complete, then request-url → PUT → confirm → download, then the hand-written bodies.

    One test per backend rather than one per step: starting the service
    (~3.5 s, mostly imports) and generating (~1.5 s) cost far more than the
    requests.
    """
    _assert_generated_cleanly_for_every_operation(generated)
    client_module = generated.module("client")
    token = mint_token(service.settings, sub="generated-client-user")
    client = client_module.AuthenticatedClient(base_url=service.base_url, token=token)
    anonymous = client_module.Client(base_url=service.base_url)
    async with client, anonymous, httpx.AsyncClient(timeout=30) as plain:
        await _presigned_upload(generated, client, anonymous, plain, service.settings)
        await _uploads_with_hand_written_bodies(generated, client, plain, tmp_path)


async def _presigned_upload(
    generated: GeneratedClient,
    client: Any,
    anonymous: Any,
    plain: httpx.AsyncClient,
    settings: Settings,
) -> None:
    """request-url → PUT (plain httpx: storage's API) → confirm → download, all typed."""
    models = generated.module("models")
    request_upload_url = generated.module("api.uploads.request_upload_url")
    confirm_upload_by_key = generated.module("api.uploads.confirm_upload_by_key")
    download_file = generated.module("api.files.download_file")
    get_file = generated.module("api.files.get_file")
    list_files = generated.module("api.files.list_files")

    body = b"Bytes uploaded by a generated client.\n" * 64
    digest = sha256_b64(body)
    request = models.UploadUrlRequest(
        filename="notes.txt",
        content_type="text/plain",
        size=len(body),
        sha256=digest,
        purpose=models.Purpose.ATTACHMENT,
    )
    # Without a token: the typed problem+json body, not an untyped None.
    refused = await request_upload_url.asyncio_detailed(client=anonymous, body=request)
    assert refused.status_code == 401
    assert isinstance(refused.parsed, models.Problem)
    assert refused.parsed.code == "missing_token"

    # Invalid fields: a typed problem listing them.
    invalid = await request_upload_url.asyncio_detailed(
        client=client,
        body=models.UploadUrlRequest(filename="notes.txt", content_type="text/plain", size=0),
    )
    assert invalid.status_code == 422
    assert isinstance(invalid.parsed, models.Problem)
    assert invalid.parsed.code == "validation_error"
    assert [error.loc for error in invalid.parsed.errors] == [["body", "size"]]

    grant = await request_upload_url.asyncio(client=client, body=request)
    assert isinstance(grant, models.UploadUrlResponse), grant
    assert grant.method == "PUT"
    assert isinstance(grant.upload_id, uuid.UUID)
    headers = grant.headers.to_dict()
    assert headers["Content-Type"] == "text/plain"

    # Confirming before the PUT: 409 object_missing, typed.
    early = await confirm_upload_by_key.asyncio_detailed(
        client=client, body=models.ConfirmRequest(file_key=grant.file_key)
    )
    assert early.status_code == 409
    assert isinstance(early.parsed, models.Problem)
    assert early.parsed.code == "object_missing"

    put = await plain.put(grant.upload_url, content=body, headers=headers)
    assert put.status_code == 200, put.text

    confirmed = await confirm_upload_by_key.asyncio(
        client=client, body=models.ConfirmRequest(file_key=grant.file_key)
    )
    assert isinstance(confirmed, models.ConfirmedFile), confirmed
    assert confirmed.status == models.UploadStatus.CONFIRMED
    assert confirmed.file_key == grant.file_key
    assert confirmed.filename == "notes.txt"
    assert confirmed.content_type == "text/plain"
    assert confirmed.size_bytes == len(body)
    assert confirmed.sha256 == digest
    assert confirmed.purpose == models.Purpose.ATTACHMENT

    read = await get_file.asyncio(client=client, file_id=confirmed.file_id)
    assert isinstance(read, models.FileRead), read
    assert read.file_id == confirmed.file_id
    assert read.confirmed_at is not None
    listed = await list_files.asyncio(client=client)
    assert isinstance(listed, models.FileList), listed
    assert [item.file_id for item in listed.items] == [confirmed.file_id]

    download = await download_file.asyncio(client=client, file_id=confirmed.file_id)
    assert isinstance(download, models.DownloadUrl), download
    assert download.expires_in == settings.download_url_expires_seconds
    fetched = await plain.get(download.download_url)
    assert fetched.status_code == 200, fetched.text
    assert fetched.content == body
    assert fetched.headers["content-type"].startswith("text/plain")


async def _uploads_with_hand_written_bodies(
    generated: GeneratedClient, client: Any, plain: httpx.AsyncClient, tmp_path: Path
) -> None:
    """The routes whose request bodies are declared by hand (streamed, not parsed by FastAPI)."""
    models = generated.module("models")
    types = generated.module("types")
    direct_upload = generated.module("api.direct_uploads.direct_upload")
    direct_upload_raw = generated.module("api.direct_uploads.direct_upload_raw")
    open_event_upload_file = generated.module("api.direct_uploads.open_event_upload_file")
    open_event_upload_image = generated.module("api.direct_uploads.open_event_upload_image")
    image = png()

    def file(name: str, content: bytes, mime_type: str) -> Any:
        return types.File(payload=io.BytesIO(content), file_name=name, mime_type=mime_type)

    avatar = await direct_upload.asyncio(
        client=client,
        body=models.DirectUploadBody(file=file("me.png", image, "image/png")),
        purpose=models.Purpose.AVATAR,
    )
    assert isinstance(avatar, models.ConfirmedFile), avatar
    assert (avatar.purpose, avatar.content_type, avatar.size_bytes) == (
        models.Purpose.AVATAR,
        "image/png",
        len(image),
    )
    assert (await plain.get(avatar.download_url)).content == image

    # A raw body (application/octet-stream): the magic bytes decide the type.
    # The generated code sends a raw body's payload as it is, so the async
    # client needs an async file (openapi-python-client issue #1239).
    path = tmp_path / "raw.png"
    path.write_bytes(image)
    async with await anyio.open_file(path, "rb") as payload:
        raw = await direct_upload_raw.asyncio(
            client=client, body=types.File(payload=payload), filename="raw.png"
        )
    assert isinstance(raw, models.ConfirmedFile), raw
    assert (raw.filename, raw.content_type) == ("raw.png", "image/png")

    # Open Event: several `files[]` answer a list of URLs, typed as a list.
    several = await open_event_upload_file.asyncio(
        client=client,
        body=models.OpenEventUploadFileBody(
            files=[file("a.png", image, "image/png"), file("b.txt", b"hello\n", "text/plain")]
        ),
    )
    assert isinstance(several, models.OpenEventFileUrl), several
    assert isinstance(several.url, list)
    assert len(several.url) == 2
    assert (await plain.get(several.url[1])).content == b"hello\n"
    one = await open_event_upload_file.asyncio(
        client=client, body=models.OpenEventUploadFileBody(file=file("a.png", image, "image/png"))
    )
    assert isinstance(one, models.OpenEventFileUrl), one
    assert isinstance(one.url, str)
    assert (await plain.get(one.url)).content == image

    posted = await open_event_upload_image.asyncio(
        client=client, body=models.OpenEventUploadImageBody(data=data_uri("image/png", image))
    )
    assert isinstance(posted, models.FileUrl), posted
    assert (await plain.get(posted.url)).content == image
