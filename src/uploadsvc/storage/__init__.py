"""Object storage: one interface (``Storage``), an S3 and a local backend.

``base.py`` is the interface; ``s3.py`` the S3 backend (``s3_signing.py``
signs its streamed parts); ``local.py`` the disk backend, whose URLs
``local_signing.py`` signs and verifies and ``local_server.py`` serves.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from uploadsvc.config import Settings
from uploadsvc.storage.base import MultipartTracker, ObjectInfo, PresignedRequest, Storage
from uploadsvc.storage.local import LocalStorage
from uploadsvc.storage.s3 import S3Storage, open_s3_storage

__all__ = [
    "LocalStorage",
    "MultipartTracker",
    "ObjectInfo",
    "PresignedRequest",
    "S3Storage",
    "Storage",
    "open_storage",
]


@contextlib.asynccontextmanager
async def open_storage(
    settings: Settings, *, tracker: MultipartTracker | None = None
) -> AsyncIterator[Storage]:
    """The configured backend, with its clients open for the life of the context.

    ``tracker`` is told of every multipart upload S3 starts (see
    ``repository/multipart_ledger.py``); tools without a database leave it
    out. The local backend needs none: its incomplete uploads are folders.
    """
    if settings.storage_backend == "s3":
        async with open_s3_storage(settings, tracker=tracker) as s3:
            yield s3
        return
    yield LocalStorage(
        root=settings.local_storage_dir,
        secret=settings.signing_secret.get_secret_value(),
        public_base_url=settings.public_base_url,
    )
