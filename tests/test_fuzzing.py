"""Schemathesis against the service's own OpenAPI: no 500, no answer the schema does not name.

A real ``uploadsvc serve`` on PostgreSQL and LocalStack, every operation,
every check, with and without a valid token; the phases include stateful
runs along the links schemathesis infers. The example count is bounded and
the seed fixed, so a failure reproduces with the command it prints.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import empty_shared_database, make_settings
from tests.service_process import served
from tests.support.localstack import LocalStackServer
from tests.support.servers import ServerProcess
from uploadsvc.security import mint_token

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
# Enough to reach every documented status of every route in well under a minute here.
MAX_EXAMPLES = 10
SEED = 1
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.fixture(scope="module")
async def service(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, localstack: LocalStackServer
) -> AsyncIterator[ServerProcess]:
    """One service for both runs: starting one takes longer than a run."""
    with served(
        tmp_path_factory.mktemp("fuzzed"),
        database_url=postgres_url,
        storage_backend="s3",
        s3_endpoint_url=localstack.endpoint_url,
        s3_bucket=f"uploadsvc-fuzz-{uuid.uuid4().hex[:12]}",
        s3_access_key_id="test",
        s3_secret_access_key="test",
        s3_addressing_style="path",
    ) as (process, _):
        yield process
    engine = create_async_engine(postgres_url)
    async with engine.begin() as connection:
        await empty_shared_database(connection)
    await engine.dispose()


def _schemathesis(
    service: ServerProcess, tmp_path: Path, *headers: str, max_examples: int = MAX_EXAMPLES
) -> str:
    command = [
        SCHEMATHESIS,
        f"--config-file={CONFIG}",
        "run",
        f"{service.base_url}/openapi.json",
        "--checks=all",
        f"--max-examples={max_examples}",
        f"--seed={SEED}",
        "--workers=1",  # CPython 3.11 may fail parsing lambdas in two threads at once
        "--request-timeout=10",
        "--no-shrink",
        *(f"--header={header}" for header in headers),
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, cwd=tmp_path, check=False
    )
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-5000:]
    # Every operation of the document was run.
    paths = httpx.get(f"{service.base_url}/openapi.json").json()["paths"]
    assert f"Tested: {sum(len(operations) for operations in paths.values())}" in result.stdout
    return result.stdout


async def test_schemathesis_finds_nothing_with_a_token(
    service: ServerProcess, tmp_path: Path
) -> None:
    token = mint_token(make_settings("pg-s3", tmp_path=tmp_path), sub="fuzzer")
    summary = _schemathesis(service, tmp_path, f"Authorization: Bearer {token}")
    assert "✅ Stateful" in summary


async def test_schemathesis_finds_nothing_without_a_token(
    service: ServerProcess, tmp_path: Path
) -> None:
    # Every answer is a 401 before any work: a few examples of each shape suffice.
    _schemathesis(service, tmp_path, max_examples=3)
