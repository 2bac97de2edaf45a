"""The URLs of the local storage backend, served by the app itself.

Only mounted when ``STORAGE_BACKEND=local``. The signed query string is the
authorisation (as with S3 presigned URLs); there is no bearer token here.
What a request must match is checked in ``storage/local_server.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from uploadsvc.schemas.text import Text
from uploadsvc.storage import local_server
from uploadsvc.storage.local import LocalStorage
from uploadsvc.storage.local_signing import ROUTE_PREFIX

router = APIRouter(prefix=ROUTE_PREFIX, include_in_schema=False)


def _local_storage(request: Request) -> LocalStorage:
    storage = request.app.state.resources.storage
    assert isinstance(storage, LocalStorage), "route mounted only for the local backend"
    return storage


@router.put("/{key:path}")
async def put_object(key: Text, request: Request) -> Response:
    etag = await local_server.receive_put(
        _local_storage(request), key, request.query_params, request.headers, request.stream()
    )
    return Response(status_code=200, headers={"ETag": etag})


@router.get("/{key:path}")
async def get_object(key: Text, request: Request) -> StreamingResponse:
    download = await local_server.open_download(
        _local_storage(request), key, request.query_params, request.headers.get("range")
    )
    return StreamingResponse(download.body, status_code=download.status, headers=download.headers)
