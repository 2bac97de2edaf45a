"""The servers the direct-upload benchmark compares, one per process.

    python -m bench.direct_server MODE --port PORT --data-dir DIR
        [--endpoint S3_URL] [--bucket NAME] [--profile FILE]

MODE:

- ``drain``: a bare endpoint that reads ``request.stream()`` and only hashes;
- ``tutorial``: the common tutorial handler (``file: UploadFile``,
  ``await file.read()``, one ``put_object`` with aioboto3);
- ``null``: uploadsvc (``create_app``) whose storage, once the lifespan has
  started, is :class:`NullStorage`, which drains ``put_stream`` and keeps
  nothing;
- ``s3``: uploadsvc with ``storage_backend="s3"`` (the S3 server at
  ``--endpoint``).

Every server listens on 127.0.0.1 only, with one uvicorn worker, and answers
``GET /healthz``. Each also runs an event-loop lag monitor (a task that
sleeps 5 ms and records how late it wakes up); ``POST /bench/lag`` returns
what it saw since the previous call, so a slow ``/healthz`` can be told
apart: the server's loop was blocked, or the machine's CPUs were busy.
uploadsvc gets a migrated SQLite database in ``--data-dir``. ``--profile
FILE`` runs the server under cProfile and writes the stats to FILE when it
shuts down (SIGTERM).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import dataclasses
import hashlib
import signal
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import uvicorn
from fastapi import FastAPI, Request, UploadFile

from bench.common import settings
from uploadsvc.app import create_app
from uploadsvc.cli import run_migrations
from uploadsvc.storage.base import (
    GetGrant,
    IncompleteUpload,
    ListedObject,
    PartGrant,
    PresignedRequest,
    PutGrant,
    Storage,
    StorageSetup,
    UploadedPart,
)

BUCKET = "bench-direct"
S3_CREDENTIALS: dict[str, str] = {
    "aws_access_key_id": "bench",
    "aws_secret_access_key": "test",  # LocalStack accepts this secret only
    "region_name": "us-east-1",
}


class NullStorage(Storage):
    """A storage that receives ``put_stream`` and keeps nothing.

    It measures the upload path of uploadsvc (parsing, the magic-byte check,
    counting, hashing, the database row) without any storage cost.
    """

    def __init__(self) -> None:
        self.received = 0

    async def put_stream(
        self, key: str, *, content_type: str, chunks: AsyncIterator[bytes]
    ) -> None:
        async for chunk in chunks:
            self.received += len(chunk)

    async def presign_put(self, grant: PutGrant) -> PresignedRequest:
        return PresignedRequest(url=f"http://127.0.0.1/null/{grant.key}", method="PUT")

    async def presign_get(self, grant: GetGrant) -> str:
        return f"http://127.0.0.1/null/{grant.key}"

    async def download_to(self, key: str, destination: Path) -> None:
        raise NotImplementedError("the null storage keeps no bytes")

    async def head(self, key: str) -> None:
        return None

    async def read_prefix(self, key: str, length: int) -> bytes:
        return b""

    async def delete(self, key: str) -> None:
        return None

    async def check_ready(self) -> None:
        return None

    async def initialize(self, *, cors_origins: list[str], check: bool = False) -> StorageSetup:
        return StorageSetup()

    async def list_pages(
        self, prefix: str = "", *, start_after: str | None = None
    ) -> AsyncIterator[list[ListedObject]]:
        pages: list[list[ListedObject]] = []
        for page in pages:
            yield page

    async def delete_many(self, keys: list[str]) -> None:
        return None

    async def list_incomplete_uploads(self, prefix: str) -> list[IncompleteUpload]:
        return []

    async def abort_incomplete_upload(self, upload: IncompleteUpload) -> None:
        return None

    # Multipart presigned uploads never touch the direct-upload path measured here.

    async def presign_browser_upload(
        self, key: str, *, content_type: str, max_size: int, expires_in: int
    ) -> PresignedRequest:
        raise NotImplementedError("the null storage signs no browser uploads")

    async def start_multipart(self, key: str, *, content_type: str) -> str:
        raise NotImplementedError("the null storage has no multipart uploads")

    async def presign_part(self, grant: PartGrant) -> PresignedRequest:
        raise NotImplementedError("the null storage has no multipart uploads")

    async def list_parts(self, key: str, *, multipart_upload_id: str) -> list[UploadedPart]:
        raise NotImplementedError("the null storage has no multipart uploads")

    async def complete_multipart(
        self, key: str, *, multipart_upload_id: str, parts: list[tuple[int, str]]
    ) -> None:
        raise NotImplementedError("the null storage has no multipart uploads")

    async def abort_multipart(self, key: str, *, multipart_upload_id: str) -> None:
        return None

    async def sha256_of(self, key: str) -> str:
        raise NotImplementedError("the null storage keeps no bytes")

    def read_chunks(self, key: str) -> AsyncGenerator[bytes, None]:
        raise NotImplementedError("the null storage keeps no bytes")

    async def move(self, key: str, new_key: str) -> None:
        raise NotImplementedError("the null storage keeps no bytes")

    async def promote(self, staged_key: str, key: str) -> None:
        raise NotImplementedError("the null storage keeps no bytes")


class LagMonitor:
    """How late a 5 ms sleep wakes up: the longest the event loop was blocked."""

    INTERVAL = 0.005

    def __init__(self) -> None:
        self.lags_ms: list[float] = []

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(self.INTERVAL)
            self.lags_ms.append((loop.time() - start - self.INTERVAL) * 1000)

    def take(self) -> dict[str, float]:
        lags, self.lags_ms = sorted(self.lags_ms), []
        if not lags:
            return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0, "over_10ms": 0}
        return {
            "n": len(lags),
            "p50": lags[len(lags) // 2],
            "p99": lags[max(0, -(-len(lags) * 99 // 100) - 1)],
            "max": lags[-1],
            "over_10ms": sum(lag > 10 for lag in lags),
        }


def with_lag_monitor(app: FastAPI) -> FastAPI:
    monitor = LagMonitor()
    started = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
        async with started(app_):
            task = asyncio.create_task(monitor.run())
            try:
                yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def lag() -> dict[str, float]:
        return monitor.take()

    app.router.lifespan_context = lifespan
    app.add_api_route("/bench/lag", lag, methods=["POST"], include_in_schema=False)
    return app


def drain_app() -> FastAPI:
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/upload")
    async def upload(request: Request) -> dict[str, Any]:
        digest, size = hashlib.sha256(), 0
        async for chunk in request.stream():
            digest.update(chunk)
            size += len(chunk)
        return {"size": size, "sha256": digest.hexdigest()}

    return app


def tutorial_app(endpoint: str, bucket: str) -> FastAPI:
    app = FastAPI()
    session = aioboto3.Session()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/upload")
    async def upload(file: UploadFile) -> dict[str, Any]:
        data = await file.read()
        async with session.client("s3", endpoint_url=endpoint, **S3_CREDENTIALS) as s3:
            await s3.put_object(Bucket=bucket, Key=f"tutorial/{file.filename}", Body=data)
        return {"size": len(data)}

    return app


def uploadsvc_app(mode: str, data_dir: Path, endpoint: str | None, bucket: str) -> FastAPI:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{data_dir / 'bench.db'}",
        "local_storage_dir": data_dir / "storage",
        "max_attachment_bytes": 2 * 2**30,
        # The in-process scheduler must not run a cleanup in the middle of a run.
        "cleanup_every_minutes": 1440,
    }
    if mode == "s3":
        if endpoint is None:
            raise SystemExit("--endpoint is needed for the s3 mode")
        values |= {
            "storage_backend": "s3",
            "s3_endpoint_url": endpoint,
            "s3_bucket": bucket,
            "s3_access_key_id": S3_CREDENTIALS["aws_access_key_id"],
            "s3_secret_access_key": S3_CREDENTIALS["aws_secret_access_key"],
            "s3_addressing_style": "path",
        }
    config = settings(**values)
    run_migrations(config)
    app = create_app(config)
    if mode == "null":
        started = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
            async with started(app_):
                resources = app_.state.resources
                app_.state.resources = dataclasses.replace(resources, storage=NullStorage())
                yield

        app.router.lifespan_context = lifespan
    return app


def build(args: argparse.Namespace) -> FastAPI:
    if args.mode == "drain":
        return with_lag_monitor(drain_app())
    if args.mode == "tutorial":
        if args.endpoint is None:
            raise SystemExit("--endpoint is needed for the tutorial mode")
        return with_lag_monitor(tutorial_app(args.endpoint, args.bucket))
    return with_lag_monitor(uploadsvc_app(args.mode, args.data_dir, args.endpoint, args.bucket))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["drain", "tutorial", "null", "s3"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--endpoint")
    parser.add_argument("--bucket", default=BUCKET)
    parser.add_argument("--profile", type=Path)
    args = parser.parse_args()
    app = build(args)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=args.port, workers=1, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    if args.profile is None:
        server.run()
        return
    # uvicorn re-raises SIGTERM once it has shut down; make that an exit that
    # still runs the ``finally`` below instead of killing the process outright.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    profile = cProfile.Profile()
    try:
        profile.runcall(server.run)
    finally:
        profile.dump_stats(args.profile)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    main()
