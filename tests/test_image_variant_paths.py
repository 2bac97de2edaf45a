"""Every upload path makes variants of a 4000 x 3000 photo with GPS and EXIF
orientation 6: presigned PUT, multipart, direct, Uppy's single request and the
Open Event image route (test_image_variants.py covers the rules in detail)."""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest
from PIL import Image
from sqlalchemy import select

from tests.conftest import Api
from tests.test_image_variants import GPS_IFD, jpeg_rotated_with_gps, upload_in_one_part
from tests.test_uppy_protocol import upload_with_parameters
from uploadsvc.job_queue import InProcessQueue
from uploadsvc.models.uploads import Upload

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local", "pg-s3"])

# 4000 x 3000 with EXIF orientation 6: portrait, long side as configured.
EXPECTED = {"large": (960, 1280), "thumbnail": (384, 512), "small": (192, 256), "icon": (48, 64)}


async def _check_variants(api: Api, file_id: str) -> None:
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    await queue.wait_idle()
    listed = await api.app_client.get(f"/v1/files/{file_id}/variants", headers=api.headers())
    assert listed.status_code == 200, listed.text
    variants: dict[str, Any] = {v["name"]: v for v in listed.json()["items"]}
    assert {name: (v["width"], v["height"]) for name, v in variants.items()} == EXPECTED
    for variant in variants.values():
        fetched = await api.app_client.get(variant["download_url"])
        image = Image.open(io.BytesIO(fetched.content))
        assert image.size == EXPECTED[variant["name"]]
        assert len(image.getexif().get_ifd(GPS_IFD)) == 0
        assert len(image.getexif()) == 0


PHOTO = {"filename": "stage.jpg", "content_type": "image/jpeg"}


async def test_presigned_upload_gets_variants(api: Api) -> None:
    confirmed = await api.upload(jpeg_rotated_with_gps(4000, 3000), **PHOTO)
    await _check_variants(api, confirmed["file_id"])


async def test_multipart_upload_gets_variants(api: Api) -> None:
    file_id = await upload_in_one_part(
        api, jpeg_rotated_with_gps(4000, 3000), filename=PHOTO["filename"]
    )
    await _check_variants(api, file_id)


async def test_direct_upload_gets_variants(api: Api) -> None:
    response = await api.app_client.post(
        "/v1/uploads/direct",
        files={"file": ("stage.jpg", jpeg_rotated_with_gps(4000, 3000), "image/jpeg")},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    await _check_variants(api, response.json()["file_id"])


async def test_uppy_single_request_upload_gets_variants(api: Api) -> None:
    body = jpeg_rotated_with_gps(4000, 3000)
    response = await api.app_client.get(
        "/v1/s3/params",
        params={"filename": "stage.jpg", "type": "image/jpeg"},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    params = response.json()
    stored = await upload_with_parameters(api, params, body)
    assert stored.is_success, stored.text
    confirmed = await api.confirm(params["key"])
    assert confirmed.status_code == 200, confirmed.text
    await _check_variants(api, confirmed.json()["file_id"])


async def test_open_event_image_route_gets_variants(api: Api) -> None:
    body = jpeg_rotated_with_gps(4000, 3000)
    data = "data:image/jpeg;base64," + base64.b64encode(body).decode()
    stored = await api.app_client.post(
        "/v1/upload/image", json={"data": data}, headers=api.headers()
    )
    assert stored.status_code in (200, 201), stored.text
    async with api.resources.session_factory() as session:
        file_id = await session.scalar(select(Upload.id).where(Upload.owner_id == "alice"))
    await _check_variants(api, str(file_id))
