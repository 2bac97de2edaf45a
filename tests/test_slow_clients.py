"""A client that trickles its body holds no transaction and no pooled connection.

Against a real ``uploadsvc serve`` (uvicorn, production settings), on SQLite
and on PostgreSQL with the default pool: 30 clients send the file part of a
direct, Open Event or import upload, then drip the rest of their form a few
bytes a second. Meanwhile another user's ``GET /v1/files`` must keep
answering in under a second. Before the fix, each file's row was flushed
before the rest of the body was read: SQLite's single write lock (every
transaction is ``BEGIN IMMEDIATE``) or PostgreSQL's whole pool stayed held
by the slow clients (docs/architecture.md, "Sessions and transactions").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import TEST_JWT_SECRET, TEST_SIGNING_SECRET
from tests.support.files import TEXT_LINE, zip_archive
from tests.support.servers import (
    ServerProcess,
    free_loopback_port,
    run_cli,
    start_uploadsvc,
    uploadsvc_env,
)
from uploadsvc.config import Settings
from uploadsvc.security import mint_token

CLIENTS = 30
BOUNDARY = "slowclientboundary"
DRIP_BYTES = b"x"
DRIP_INTERVAL = 0.25  # four bytes a second
WATCH_SECONDS = 8.0
WATCH_INTERVAL = 0.2
ANSWER_BOUND = 1.0
# Hang bounds, not expectations.
SETTLE_SECONDS = 1.5
ANSWER_TIMEOUT = 60.0

# (path, part name, filename, part type, bytes, expected status)
ROUTES = [
    ("/v1/uploads/direct", "file", "notes.txt", "text/plain", TEXT_LINE, 201),
    ("/v1/upload/file", "files[]", "notes.txt", "text/plain", TEXT_LINE, 200),
    ("/v1/events/import/json", "file", "event.zip", "application/zip", zip_archive(), 202),
]


@pytest.fixture(params=["sqlite", "postgres"])
def service(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[ServerProcess, Settings]]:
    port = free_loopback_port()
    values = {
        "env": "production",
        "jwt_secret": TEST_JWT_SECRET,
        "signing_secret": TEST_SIGNING_SECRET,
        "local_storage_dir": str(tmp_path / "storage"),
        "public_base_url": f"http://127.0.0.1:{port}",
    }
    if request.param == "postgres":
        # Migrated by the fixture; the pool is the default one.
        values["database_url"] = request.getfixturevalue("postgres_url")
    else:
        values["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'uploadsvc.db'}"
    env = uploadsvc_env(values)
    if request.param == "sqlite":
        run_cli(["migrate"], env=env, cwd=tmp_path)
    run_cli(["storage", "init"], env=env, cwd=tmp_path)
    server = start_uploadsvc("serve", port=port, env=env, workdir=tmp_path)
    try:
        yield server, Settings(_env_file=None, **values)  # type: ignore[arg-type]
    finally:
        server.stop()


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _trickling_upload(
    port: int,
    token: str,
    route: tuple[str, str, str, str, bytes, int],
    *,
    sent: asyncio.Event,
    stop: asyncio.Event,
) -> int:
    """One upload whose file part arrives at once and whose last part drips; its status."""
    path, name, filename, part_type, data, _ = route
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            (
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Authorization: Bearer {token}\r\n"
                f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: {part_type}\r\n\r\n'
        ).encode()
        note = f'\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
        writer.write(_chunk(head + data + note.encode()))
        await writer.drain()
        sent.set()
        while not stop.is_set():
            writer.write(_chunk(DRIP_BYTES))
            await writer.drain()
            await asyncio.sleep(DRIP_INTERVAL)
        writer.write(_chunk(f"\r\n--{BOUNDARY}--\r\n".encode()) + b"0\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)
        return int(status_line.split()[1])
    finally:
        writer.close()


async def test_trickling_uploads_leave_the_database_to_other_users(
    service: tuple[ServerProcess, Settings],
) -> None:
    server, settings = service
    alice = mint_token(settings, sub="alice")
    bob = {"Authorization": f"Bearer {mint_token(settings, sub='bob')}"}
    stop = asyncio.Event()
    sent = [asyncio.Event() for _ in range(CLIENTS)]
    uploads = [
        asyncio.create_task(
            _trickling_upload(server.port, alice, ROUTES[n % len(ROUTES)], sent=sent[n], stop=stop)
        )
        for n in range(CLIENTS)
    ]
    slowest = 0.0
    try:
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in sent)), ANSWER_TIMEOUT)
        # Time for the server to take every file part (and, before the fix, flush its row).
        await asyncio.sleep(SETTLE_SECONDS)
        async with httpx.AsyncClient(base_url=server.base_url, timeout=ANSWER_TIMEOUT) as client:
            watch_until = time.monotonic() + WATCH_SECONDS
            while time.monotonic() < watch_until:
                started = time.monotonic()
                answer = await client.get("/v1/files", headers=bob)
                took = time.monotonic() - started
                assert answer.status_code == 200, answer.text
                assert answer.json()["items"] == []
                slowest = max(slowest, took)
                await asyncio.sleep(WATCH_INTERVAL)
    finally:
        stop.set()
        statuses = await asyncio.gather(*uploads, return_exceptions=True)
    assert slowest < ANSWER_BOUND, f"GET /v1/files took {slowest:.2f} s{server.log_tail()}"
    assert statuses == [ROUTES[n % len(ROUTES)][5] for n in range(CLIENTS)], server.log_tail()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=ANSWER_TIMEOUT) as client:
        listed = await client.get(
            "/v1/files",
            params={"limit": 200},
            headers={"Authorization": f"Bearer {alice}"},
        )
    # Every upload's row was written: the files, and each import's archive.
    assert len(listed.json()["items"]) == CLIENTS
