"""The image media of an event import get variants, as uploaded images do."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image

from tests.conftest import Api
from tests.openevent_archives import build_zip
from tests.test_image_variants import jpeg_rotated_with_gps, png_with_alpha
from uploadsvc.example_archive import example_files
from uploadsvc.job_queue import InProcessQueue

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local", "pg-s3"])


async def _get(api: Api, url: str) -> Any:
    response = await api.app_client.get(url, headers=api.headers())
    assert response.status_code == 200, response.text
    return response.json()


async def _image(api: Api, variant: dict[str, Any]) -> Image.Image:
    assert variant["status"] == "ready", variant
    response = await api.app_client.get(variant["download_url"])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == variant["content_type"] == "image/webp"
    image = Image.open(io.BytesIO(response.content))
    image.load()
    assert image.size == (variant["width"], variant["height"])
    return image


async def test_imported_photos_and_logos_get_variants_without_metadata(api: Api) -> None:
    files, media = example_files()
    files["speakers"][0]["photo-url"] = "/images/speakers/ada.jpg"
    media["images/speakers/ada.jpg"] = jpeg_rotated_with_gps()
    media["images/sponsors/object-storage.png"] = png_with_alpha()
    accepted = await api.app_client.post(
        "/v1/events/import/json",
        files={"file": ("event.zip", build_zip(files, media), "application/zip")},
        headers=api.headers(),
    )
    assert accepted.status_code == 202, accepted.text
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    await queue.wait_idle()  # the import, then the variants jobs it enqueued
    task = await _get(api, accepted.json()["task_url"])
    assert task["state"] == "SUCCESS", task
    base = f"/v1/events/{task['result']['id']}"

    speakers = {s["name"]: s for s in (await _get(api, f"{base}/speakers"))["items"]}
    ada = {v["name"]: v for v in speakers["Ada Lovelace"]["photo_variants"]}
    # 1600 x 1200 with EXIF orientation 6: portrait, long side as configured.
    sizes = {"large": (960, 1280), "thumbnail": (384, 512), "small": (192, 256), "icon": (48, 64)}
    assert {name: (v["width"], v["height"]) for name, v in ada.items()} == sizes
    for variant in ada.values():
        image = await _image(api, variant)
        assert len(image.getexif()) == 0  # no orientation, camera or GPS position
        assert "xmp" not in image.info
    # The 32 px photo of the other speaker is never upscaled.
    grace = {v["name"]: v for v in speakers["Grace Hopper"]["photo_variants"]}
    assert (grace["large"]["width"], grace["large"]["height"]) == (32, 32)

    [sponsor] = (await _get(api, f"{base}/sponsors"))["items"]
    logo = {v["name"]: v for v in sponsor["logo_variants"]}
    assert (await _image(api, logo["small"])).mode == "RGBA"  # transparency kept
    event = await _get(api, base)
    assert {v["name"] for v in event["logo_variants"]} == set(sizes)
    assert all(v["status"] == "ready" for v in event["logo_variants"])
