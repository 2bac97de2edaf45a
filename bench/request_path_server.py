"""The service as ``uploadsvc serve`` runs it, plus two comparison routes for the benchmark.

    python -m bench.request_path_server --port 8123   # settings from the environment

- ``POST /bench/noop``: the same request and response models and the same
  token check as ``POST /v1/uploads/request-url``, and nothing else (no
  database, no signing): the ceiling a request-url route can approach.
- ``GET /bench/floor``: what no handler of the list route can avoid: the
  same app, middleware and uvicorn, no token, and one query of the list's
  shape sent by asyncpg itself (a pool of its own, no SQLAlchemy) with a
  constant JSON answer. Its requests/s over /healthz's is the most the
  list route could reach on this machine.
- ``POST /bench/naive``: request-url as a tutorial writes it: an ORM
  session, ``session.add`` + flush, aioboto3's ``generate_presigned_url``,
  a commit.

uvicorn runs as ``uploadsvc serve`` runs it: one worker, its loop and HTTP
parser defaults (uvloop and httptools when installed), the service's own
logging (JSON lines, the redacted access line, no uvicorn access log) and
garbage-collector settings (``app.prepare_for_serving``).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
import uvicorn
from fastapi import FastAPI, status

from uploadsvc.app import create_app, prepare_for_serving
from uploadsvc.config import Settings
from uploadsvc.deps import PrincipalDep, ResourcesDep, SessionDep, SettingsDep
from uploadsvc.schemas.uploads import UploadUrlRequest, UploadUrlResponse
from uploadsvc.services.uploads import declare_upload
from uploadsvc.telemetry import uvicorn_logging

_FLOOR_QUERY = (
    "SELECT * FROM uploads WHERE owner_id = $1 AND status = 'confirmed' "
    "ORDER BY created_at DESC, id DESC LIMIT 2"
)


def build_app(settings: Settings) -> FastAPI:
    app = create_app(settings)
    pools: list[asyncpg.Pool] = []
    opening = asyncio.Lock()

    @app.get("/bench/floor", include_in_schema=False)
    async def floor() -> dict[str, int]:
        async with opening:
            if not pools:
                dsn = settings.database_url.replace("postgresql+asyncpg://", "postgresql://")
                pools.append(await asyncpg.create_pool(dsn, min_size=16, max_size=16))
        async with pools[0].acquire() as connection:
            rows = await connection.fetch(_FLOOR_QUERY, "bench-user")
        return {"rows": len(rows)}

    @app.post("/bench/noop", status_code=status.HTTP_201_CREATED, include_in_schema=False)
    async def noop(
        body: UploadUrlRequest, settings: SettingsDep, principal: PrincipalDep
    ) -> UploadUrlResponse:
        upload = declare_upload(settings, principal=principal, file=body)
        return UploadUrlResponse(
            upload_id=upload.id,
            file_key=upload.file_key,
            upload_url="https://example.invalid/" + upload.file_key,
            method="PUT",
            headers={"Content-Type": upload.content_type},
            expires_in=settings.upload_url_expires_seconds,
            expires_at=upload.url_expires_at,
        )

    @app.post("/bench/naive", status_code=status.HTTP_201_CREATED, include_in_schema=False)
    async def naive(
        body: UploadUrlRequest,
        session: SessionDep,
        resources: ResourcesDep,
        principal: PrincipalDep,
    ) -> UploadUrlResponse:
        upload = declare_upload(resources.settings, principal=principal, file=body)
        session.add(upload)
        await session.flush()
        assert upload.size_bytes is not None
        params: dict[str, Any] = {
            "Bucket": resources.settings.s3_bucket,
            "Key": upload.file_key,
            "ContentType": upload.content_type,
            "ContentLength": upload.size_bytes,
        }
        storage: Any = resources.storage
        url = await storage._presign_client.generate_presigned_url(
            "put_object", Params=params, ExpiresIn=resources.settings.upload_url_expires_seconds
        )
        return UploadUrlResponse(
            upload_id=upload.id,
            file_key=upload.file_key,
            upload_url=url,
            method="PUT",
            headers={"Content-Type": upload.content_type},
            expires_in=resources.settings.upload_url_expires_seconds,
            expires_at=upload.url_expires_at,
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    # uvicorn's defaults ("auto": uvloop and httptools when installed), or
    # "asyncio" / "h11" to measure what those two bring.
    parser.add_argument("--loop", default="auto")
    parser.add_argument("--http", default="auto")
    args = parser.parse_args()
    settings = Settings()
    app = build_app(settings)
    prepare_for_serving()
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop=args.loop,
        http=args.http,
        **uvicorn_logging(settings, "serve"),
    )


if __name__ == "__main__":
    main()
