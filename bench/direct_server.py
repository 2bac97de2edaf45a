"""The servers the direct-upload benchmark compares, one per process.

    python -m bench.direct_server MODE PORT DATA_DIR [S3_ENDPOINT]

MODE: ``drain`` (bare request.stream() that only hashes), ``tutorial``
(UploadFile, read everything, one put_object), ``null`` (uploadsvc with a
storage that discards the bytes), ``s3`` (uploadsvc to S3).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, UploadFile

from bench.common import settings
from uploadsvc.app import create_app
from uploadsvc.cli import run_migrations
from uploadsvc.storage import LocalStorage

BUCKET = "bench-direct"


class NullStorage(LocalStorage):
    """Receives the stream and keeps nothing: the upload path without storage costs."""

    async def put_stream(
        self, key: str, *, content_type: str, chunks: AsyncIterator[bytes]
    ) -> None:
        async for _ in chunks:
            pass


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


def tutorial_app(endpoint: str) -> FastAPI:
    import aioboto3

    app = FastAPI()
    session = aioboto3.Session()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/upload")
    async def upload(file: UploadFile) -> dict[str, Any]:
        data = await file.read()
        async with session.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ) as s3:
            await s3.put_object(Bucket=BUCKET, Key=f"tutorial/{file.filename}", Body=data)
        return {"size": len(data)}

    return app


def uploadsvc_app(mode: str, data_dir: Path, endpoint: str | None) -> FastAPI:
    values: dict[str, Any] = {
        "database_url": f"sqlite+aiosqlite:///{data_dir / 'bench.db'}",
        "local_storage_dir": data_dir / "storage",
        "max_attachment_bytes": 4 * 2**30,
    }
    if mode == "s3":
        assert endpoint is not None
        values |= {
            "storage_backend": "s3",
            "s3_endpoint_url": endpoint,
            "s3_bucket": BUCKET,
            "s3_access_key_id": "test",
            "s3_secret_access_key": "test",
            "s3_addressing_style": "path",
        }
    config = settings(**values)
    run_migrations(config)
    app = create_app(config)
    if mode == "null":
        inner = app.router.lifespan_context

        @contextlib.asynccontextmanager
        async def lifespan(app_: FastAPI) -> AsyncIterator[None]:
            async with inner(app_):
                resources = app_.state.resources
                null = NullStorage(
                    root=data_dir / "storage", secret="x" * 32, public_base_url="http://127.0.0.1"
                )
                await null.initialize(cors_origins=[])
                app_.state.resources = dataclasses.replace(resources, storage=null)
                yield

        app.router.lifespan_context = lifespan
    return app


def main() -> None:
    mode, port, data_dir = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    endpoint = sys.argv[4] if len(sys.argv) > 4 else None
    if mode == "drain":
        app = drain_app()
    elif mode == "tutorial":
        assert endpoint is not None
        app = tutorial_app(endpoint)
    else:
        app = uploadsvc_app(mode, data_dir, endpoint)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
