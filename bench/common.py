"""Shared set-up for the benchmarks: a scratch PostgreSQL database and LocalStack."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.localstack import LocalStackServer, start_localstack  # noqa: E402

from uploadsvc.cli import run_migrations  # noqa: E402
from uploadsvc.config import Settings  # noqa: E402

ADMIN_URL = os.environ.get(
    "UPLOADSVC_TEST_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


async def _admin(statement: str) -> None:
    engine = create_async_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    name = f"uploadsvc_bench_{uuid.uuid4().hex[:8]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        settings = Settings(_env_file=None, env="development", database_url=url)
        await asyncio.to_thread(run_migrations, settings)
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def localstack() -> Iterator[LocalStackServer]:
    server = start_localstack(REPO)
    try:
        yield server
    finally:
        server.stop()


def s3_settings(server: LocalStackServer, **values: Any) -> dict[str, Any]:
    return {
        "storage_backend": "s3",
        "s3_endpoint_url": server.endpoint_url,
        "s3_bucket": f"bench-{uuid.uuid4().hex[:10]}",
        "s3_access_key_id": "test",
        "s3_secret_access_key": "test",
        "s3_addressing_style": "path",
        **values,
    }


def settings(**values: Any) -> Settings:
    values.setdefault("env", "development")  # placeholder signing secret, loopback only
    return Settings(_env_file=None, jwt_secret="bench-secret-0123456789abcdef0123", **values)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def publish(name: str, body: str, *, quick: bool) -> None:
    """Print a benchmark's results; a full run (not ``--quick``) also writes its section."""
    print(body)
    if not quick:
        write_section(name, body)


def write_section(name: str, body: str) -> None:
    """Replace this benchmark's section of BENCHMARKS.md (between its markers)."""
    path = REPO / "BENCHMARKS.md"
    current = path.read_text() if path.exists() else "# Benchmarks\n\nRun with `make bench`.\n"
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in current:
        head, rest = current.split(begin, 1)
        current = head + block + rest.split(end, 1)[1]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    path.write_text(current)
