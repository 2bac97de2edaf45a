"""The service as ``uploadsvc serve`` runs it, plus two comparison routes for the benchmark.

    python -m bench.request_path_server --port 8123   # settings from the environment

- ``POST /bench/noop``: the same request and response models and the same
  token check as ``POST /v1/uploads/request-url``, and nothing else (no
  database, no signing): the ceiling a request-url route can approach.
- ``POST /bench/naive``: request-url as a tutorial writes it: an ORM
  session, ``session.add`` + flush, aioboto3's ``generate_presigned_url``,
  a commit.

uvicorn runs with its defaults, as ``uploadsvc serve`` does (uvloop and
httptools when installed, one worker).
"""

from __future__ import annotations

import argparse
from typing import Any

import uvicorn
from fastapi import FastAPI, status

from uploadsvc.app import create_app
from uploadsvc.config import Settings
from uploadsvc.deps import PrincipalDep, ResourcesDep, SessionDep, SettingsDep
from uploadsvc.schemas.uploads import UploadUrlRequest, UploadUrlResponse
from uploadsvc.services.uploads import declare_upload


def build_app(settings: Settings) -> FastAPI:
    app = create_app(settings)

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
    args = parser.parse_args()
    uvicorn.run(build_app(Settings()), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
