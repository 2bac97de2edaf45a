"""A multipart upload without a declared size (Uppy's) has bounds of its own.

Its part URLs sign no length, so the service bounds the number of parts (no
more than a file within the profile's maximum can have) and its lifetime
(no request for URLs extends it past 24 hours from its start), after which
cleanup expires it and aborts its parts (docs/api.md, "Security bounds").
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import select, update

from tests.conftest import Api
from tests.support.files import MiB, png
from uploadsvc.db import utcnow
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.services.cleanup import run_cleanup
from uploadsvc.services.multipart_uploads import UNDECLARED_LIFETIME

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local", "pg-s3"])


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # 12 MiB: a file within it has at most three parts of 5 MiB or more.
    return {"max_attachment_bytes": 12 * MiB}


async def _create(api: Api, **metadata: str) -> tuple[str, str]:
    created = await api.app_client.post(
        "/v1/s3/multipart",
        json={"filename": "a.png", "type": "image/png", "metadata": metadata},
        headers=api.headers(),
    )
    assert created.status_code == 200, created.text
    return created.json()["key"], created.json()["uploadId"]


async def _sign(api: Api, key: str, upload_id: str, number: int) -> Any:
    return await api.app_client.get(
        f"/v1/s3/multipart/{upload_id}/{number}", params={"key": key}, headers=api.headers()
    )


@pytest.mark.parametrize(("purpose", "parts"), [("avatar", 1), ("attachment", 3)])
async def test_no_more_parts_than_the_profile_maximum_allows(
    api: Api, purpose: str, parts: int
) -> None:
    key, upload_id = await _create(api, purpose=purpose)
    assert (await _sign(api, key, upload_id, parts)).status_code == 200
    refused = await _sign(api, key, upload_id, parts + 1)
    assert refused.status_code == 400, refused.text
    assert refused.json()["code"] == "invalid_part_number"
    batch = await api.app_client.get(
        f"/v1/s3/multipart/{upload_id}/batch",
        params={"key": key, "partNumbers": f"1,{parts + 1}"},
        headers=api.headers(),
    )
    assert batch.status_code == 400, batch.text


async def _row(api: Api, key: str) -> Upload:
    async with api.resources.session_factory() as session:
        upload = await session.scalar(select(Upload).where(Upload.file_key == key))
        assert upload is not None
        return upload


async def _age(api: Api, key: str, by: dt.timedelta) -> None:
    """Move the upload's start (and its URLs' expiry) ``by`` into the past."""
    upload = await _row(api, key)
    async with api.resources.session_factory() as session, session.begin():
        await session.execute(
            update(Upload)
            .where(Upload.file_key == key)
            .values(created_at=upload.created_at - by, url_expires_at=upload.url_expires_at - by)
        )


async def test_asking_for_urls_never_extends_its_lifetime(api: Api) -> None:
    key, upload_id = await _create(api)
    near_the_end = UNDECLARED_LIFETIME - dt.timedelta(seconds=30)
    await _age(api, key, near_the_end)
    signed = await _sign(api, key, upload_id, 1)
    assert signed.status_code == 200, signed.text
    assert 0 < signed.json()["expires"] <= 30
    upload = await _row(api, key)
    assert upload.url_expires_at <= upload.created_at + UNDECLARED_LIFETIME

    await _age(api, key, dt.timedelta(seconds=31))
    late = await _sign(api, key, upload_id, 1)
    assert late.status_code == 410, late.text
    assert late.json()["code"] == "upload_lifetime_over"

    # Cleanup expires it once its lifetime (and cleanup's own margin) is past.
    older_than = dt.timedelta(hours=1)
    report = await run_cleanup(
        api.resources.session_factory,
        api.resources.storage,
        older_than=older_than,
        now=utcnow() + older_than + dt.timedelta(seconds=1),
    )
    assert report is not None
    assert (await _row(api, key)).status is UploadStatus.EXPIRED
    assert await api.resources.storage.list_incomplete_uploads("") == []


async def test_parts_past_the_byte_budget_reject_the_upload(api: Api) -> None:
    # An avatar (5 MiB) may have one part; its URL signs no length, so storage
    # takes a larger one. The next request for a URL counts what is held.
    key, upload_id = await _create(api, purpose="avatar")
    url = (await _sign(api, key, upload_id, 1)).json()["url"]
    put = await api.app_client.put(url, content=png() + bytes(5 * MiB))
    assert put.status_code == 200, put.text
    again = await _sign(api, key, upload_id, 1)
    assert again.status_code == 422, again.text
    assert again.json()["code"] == "too_large"
    assert (await _row(api, key)).status is UploadStatus.REJECTED
    # Its parts are aborted: nothing of it is left in storage.
    assert await api.resources.storage.list_incomplete_uploads("") == []
    assert await api.stored_keys() == []
