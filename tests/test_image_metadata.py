"""STRIP_IMAGE_METADATA: a confirmed original is rewritten without its metadata, losslessly."""

from __future__ import annotations

import base64
import hashlib
import io

import pytest
from PIL import Image, PngImagePlugin

from tests.conftest import Api
from tests.test_image_variants import GPS_IFD, ORIENTATION, jpeg_rotated_with_gps
from uploadsvc.job_queue import InProcessQueue

pytestmark = [
    pytest.mark.parametrize("backend", ["sqlite-local", "pg-s3"]),
    pytest.mark.parametrize("settings_overrides", [{"strip_image_metadata": True}]),
]


def png_with_text() -> bytes:
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "taken at home")
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta>serial 1234</x:xmpmeta>")
    out = io.BytesIO()
    Image.new("RGB", (120, 80), (10, 120, 200)).save(out, "PNG", pnginfo=info)
    return out.getvalue()


async def _stripped_original(api: Api, body: bytes, filename: str, content_type: str) -> bytes:
    confirmed = await api.upload(body, filename=filename, content_type=content_type)
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    await queue.wait_idle()
    file_url = f"/v1/files/{confirmed['file_id']}"
    download = await api.app_client.get(f"{file_url}/download", headers=api.headers())
    assert download.status_code == 200, download.text
    stored = await api.app_client.get(download.json()["download_url"])
    assert stored.status_code == 200
    data = stored.content
    assert len(data) < len(body)
    # The row records the new bytes.
    read = (await api.app_client.get(file_url, headers=api.headers())).json()
    assert read["size_bytes"] == len(data)
    assert read["sha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode()
    # Lossless: the same pixels.
    assert Image.open(io.BytesIO(data)).tobytes() == Image.open(io.BytesIO(body)).tobytes()
    return data


async def test_a_jpeg_original_loses_gps_and_camera_but_keeps_its_orientation(api: Api) -> None:
    data = await _stripped_original(api, jpeg_rotated_with_gps(), "photo.jpg", "image/jpeg")
    exif = Image.open(io.BytesIO(data)).getexif()
    assert dict(exif) == {ORIENTATION: 6}  # no Make, no GPS pointer
    assert len(exif.get_ifd(GPS_IFD)) == 0


async def test_a_png_original_loses_its_text_chunks(api: Api) -> None:
    data = await _stripped_original(api, png_with_text(), "chart.png", "image/png")
    image = Image.open(io.BytesIO(data))
    assert image.info == {}
    assert b"taken at home" not in data
    assert b"serial 1234" not in data
