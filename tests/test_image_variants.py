"""Image variants: made after confirm, off the request path, from real images built here."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import pytest
from PIL import Image

from tests.conftest import Api
from uploadsvc.job_queue import InProcessQueue

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local", "pg-s3"])

ORIENTATION = 0x0112
GPS_IFD = 0x8825


def jpeg_rotated_with_gps(width: int = 1600, height: int = 1200) -> bytes:
    """A landscape JPEG whose EXIF says "rotate 90° clockwise" (6), with a GPS position."""
    image = Image.new("RGB", (width, height), (200, 30, 30))
    # A marker in the top-left corner, to see where the rotation puts it.
    image.paste((20, 20, 220), (0, 0, width // 4, height // 4))
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "TestCam"  # Make
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (52.0, 31.0, 12.0), 3: "E", 4: (13.0, 24.0, 0.0)})
    out = io.BytesIO()
    image.save(out, "JPEG", exif=exif.tobytes(), quality=90)
    return out.getvalue()


def png_with_alpha(width: int = 800, height: int = 600) -> bytes:
    image = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    image.paste((0, 200, 0, 255), (100, 100, 300, 300))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring width x height pixels; its IDAT is a few bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 4096, 9))
        + chunk(b"IEND", b"")
    )


async def _upload_direct(api: Api, body: bytes, filename: str, content_type: str) -> str:
    response = await api.app_client.post(
        "/v1/uploads/direct",
        files={"file": (filename, body, content_type)},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    return str(response.json()["file_id"])


async def upload_in_one_part(api: Api, body: bytes, *, filename: str) -> str:
    """A JPEG uploaded as a multipart upload of one part; its file id."""
    payload = {"filename": filename, "content_type": "image/jpeg", "size": len(body)}
    started = await api.app_client.post(
        "/v1/uploads/multipart", json=payload, headers=api.headers()
    )
    assert started.status_code == 201, started.text
    [part] = started.json()["parts"]
    put = await api.app_client.put(part["url"], content=body, headers=part["headers"])
    assert put.status_code == 200, put.text
    completed = await api.app_client.post(
        f"/v1/uploads/{started.json()['upload_id']}/complete",
        json={"parts": [{"part_number": 1, "etag": put.headers["etag"]}]},
        headers=api.headers(),
    )
    assert completed.status_code == 200, completed.text
    return str(completed.json()["file_id"])


async def _variants(api: Api, file_id: str, *, user: str = "alice") -> dict[str, Any]:
    queue = api.resources.jobs
    assert isinstance(queue, InProcessQueue)
    await queue.wait_idle()
    response = await api.app_client.get(f"/v1/files/{file_id}/variants", headers=api.headers(user))
    assert response.status_code == 200, response.text
    return {item["name"]: item for item in response.json()["items"]}


async def _fetch(api: Api, url: str) -> Image.Image:
    response = await api.app_client.get(url)
    assert response.status_code == 200, response.text
    image = Image.open(io.BytesIO(response.content))
    image.load()
    return image


async def test_presigned_jpeg_gets_rotated_variants_without_metadata(api: Api) -> None:
    body = jpeg_rotated_with_gps()
    confirmed = await api.upload(body, filename="speaker.jpg", content_type="image/jpeg")

    variants = await _variants(api, confirmed["file_id"])

    assert set(variants) == {"large", "thumbnail", "small", "icon"}
    # 1600 x 1200 rotated by EXIF 6 is 1200 x 1600 (portrait); long side as configured.
    expected = {
        "large": (960, 1280),
        "thumbnail": (384, 512),
        "small": (192, 256),
        "icon": (48, 64),
    }
    for name, (width, height) in expected.items():
        variant = variants[name]
        assert variant["status"] == "ready", variant
        assert (variant["width"], variant["height"]) == (width, height)
        assert variant["content_type"] == "image/webp"
        image = await _fetch(api, variant["download_url"])
        assert image.format == "WEBP"
        assert image.size == (width, height)
        assert variant["size_bytes"] > 0
        # No EXIF at all: no orientation, no camera, no GPS position.
        assert "exif" not in image.info
        assert len(image.getexif()) == 0
        assert "xmp" not in image.info
        assert "icc_profile" not in image.info
    # The blue marker was top-left; rotated 90° clockwise it is top-right.
    large = (await _fetch(api, variants["large"]["download_url"])).convert("RGB")
    red, _, blue = large.getpixel((large.width - 10, 10))  # type: ignore[misc]
    assert blue > 150
    assert red < 100
    red, _, blue = large.getpixel((10, 10))  # type: ignore[misc]
    assert red > 150
    assert blue < 100
    # The original is untouched and still a file.
    original = await api.app_client.get(
        f"/v1/files/{confirmed['file_id']}/download", headers=api.headers()
    )
    assert original.status_code == 200


async def test_download_signs_a_variant_by_name(api: Api) -> None:
    photo = await api.upload(
        jpeg_rotated_with_gps(), filename="talk.jpg", content_type="image/jpeg"
    )
    bomb = await _upload_direct(api, png_bomb(), "bomb.png", "image/png")
    await _variants(api, photo["file_id"])
    download = f"/v1/files/{photo['file_id']}/download"

    signed = await api.app_client.get(
        download, params={"variant": "thumbnail"}, headers=api.headers()
    )
    assert signed.status_code == 200, signed.text
    fetched = await api.app_client.get(signed.json()["download_url"])
    assert fetched.headers["content-type"] == "image/webp"
    assert 'filename="talk-thumbnail.webp"' in fetched.headers["content-disposition"]
    assert Image.open(io.BytesIO(fetched.content)).size == (384, 512)
    redirect = await api.app_client.get(
        download, params={"variant": "icon", "redirect": "true"}, headers=api.headers()
    )
    assert redirect.status_code == 307
    assert (await api.app_client.get(redirect.headers["location"])).status_code == 200

    missing = await api.app_client.get(download, params={"variant": "huge"}, headers=api.headers())
    assert (missing.status_code, missing.json()["code"]) == (404, "variant_not_found")
    failed = await api.app_client.get(
        f"/v1/files/{bomb}/download", params={"variant": "small"}, headers=api.headers()
    )
    assert (failed.status_code, failed.json()["code"]) == (409, "variant_failed")
    assert "too_many_pixels" in failed.json()["detail"]
    # Another user's file stays a 404, variant or not.
    other = await api.app_client.get(
        download, params={"variant": "thumbnail"}, headers=api.headers("mallory")
    )
    assert other.status_code == 404


async def test_an_avatar_gets_the_sizes_of_its_profile(api: Api) -> None:
    confirmed = await api.upload(
        jpeg_rotated_with_gps(), filename="me.jpg", content_type="image/jpeg", purpose="avatar"
    )

    variants = await _variants(api, confirmed["file_id"])

    # An avatar's large copy is 512 px (IMAGE_AVATAR_PX), not an attachment's 1280.
    sizes = {name: (v["width"], v["height"]) for name, v in variants.items()}
    assert sizes == {
        "large": (384, 512),
        "thumbnail": (384, 512),
        "small": (192, 256),
        "icon": (48, 64),
    }


async def test_direct_png_with_alpha_keeps_it_in_webp(api: Api) -> None:
    file_id = await _upload_direct(api, png_with_alpha(), "logo.png", "image/png")

    variants = await _variants(api, file_id)

    small = variants["small"]
    assert small["status"] == "ready"
    assert (small["width"], small["height"]) == (256, 192)
    image = await _fetch(api, small["download_url"])
    assert image.format == "WEBP"
    assert image.mode == "RGBA"
    assert image.getpixel((0, 0))[3] == 0  # type: ignore[index]
    assert image.getpixel((64, 64))[3] == 255  # type: ignore[index]
    # Never upscaled: an 800 px image stays 800 px in the 1280 px copy.
    assert (variants["large"]["width"], variants["large"]["height"]) == (800, 600)


def png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


async def test_a_photo_png_gets_a_smaller_lossy_web_copy_and_line_art_stays_png(api: Api) -> None:
    # A photo: noise over a gradient, opaque although stored with an alpha channel.
    noise = [Image.effect_noise((1600, 1200), 60) for _ in range(3)]
    photo = Image.merge("RGB", noise).convert("RGBA")
    photo_png = png(photo)
    photo_id = await _upload_direct(api, photo_png, "photo.png", "image/png")
    # Line art: a one-pixel checkerboard, which PNG stores in a few KB.
    art = Image.new("1", (1000, 800))
    art.putdata([(x + y) % 2 for y in range(800) for x in range(1000)])
    art_id = await _upload_direct(api, png(art.convert("RGB")), "chart.png", "image/png")

    photo_variants = await _variants(api, photo_id)
    large = photo_variants["large"]
    assert large["content_type"] == "image/webp"
    assert large["size_bytes"] < len(photo_png) / 5
    # Nothing was transparent: no alpha channel in the copies.
    assert (await _fetch(api, large["download_url"])).mode == "RGB"

    art_variants = await _variants(api, art_id)
    assert art_variants["large"]["content_type"] == "image/png"
    assert (await _fetch(api, art_variants["large"]["download_url"])).format == "PNG"
    assert art_variants["small"]["content_type"] == "image/webp"


async def test_decompression_bomb_is_refused_from_its_header(api: Api) -> None:
    body = png_bomb()
    assert len(body) < 1024
    file_id = await _upload_direct(api, body, "bomb.png", "image/png")

    variants = await _variants(api, file_id)

    assert {v["status"] for v in variants.values()} == {"failed"}
    for variant in variants.values():
        assert variant["failure_reason"].startswith("too_many_pixels"), variant
        assert variant["download_url"] is None
    # The original stays a confirmed, downloadable file.
    file = await api.app_client.get(f"/v1/files/{file_id}", headers=api.headers())
    assert file.status_code == 200
    assert file.json()["status"] == "confirmed"


async def test_truncated_jpeg_marks_variants_failed(api: Api) -> None:
    body = jpeg_rotated_with_gps()
    file_id = await _upload_direct(api, body[: len(body) // 2], "cut.jpg", "image/jpeg")

    variants = await _variants(api, file_id)

    assert {v["status"] for v in variants.values()} == {"failed"}
    assert all(v["failure_reason"].startswith("corrupt_image") for v in variants.values())
    file = await api.app_client.get(f"/v1/files/{file_id}", headers=api.headers())
    assert file.status_code == 200


async def test_variants_are_the_owners_only_and_go_with_the_file(api: Api) -> None:
    file_id = await _upload_direct(api, png_with_alpha(), "logo.png", "image/png")
    variants = await _variants(api, file_id)
    assert {v["status"] for v in variants.values()} == {"ready"}
    listed = [page async for page in api.resources.storage.list_pages(f"variants/{file_id}/")]
    assert sum(len(page) for page in listed) == 4

    foreign = await api.app_client.get(f"/v1/files/{file_id}/variants", headers=api.headers("bob"))
    assert foreign.status_code == 404

    deleted = await api.app_client.delete(f"/v1/files/{file_id}", headers=api.headers())
    assert deleted.status_code == 204
    listed = [page async for page in api.resources.storage.list_pages(f"variants/{file_id}/")]
    assert sum(len(page) for page in listed) == 0
    gone = await api.app_client.get(f"/v1/files/{file_id}/variants", headers=api.headers())
    assert gone.status_code == 404


async def test_files_that_are_not_images_get_no_variants(api: Api) -> None:
    file_id = await _upload_direct(api, b"just some notes\n" * 10, "notes.txt", "text/plain")
    assert await _variants(api, file_id) == {}
    read = await api.app_client.get(f"/v1/files/{file_id}", headers=api.headers())
    assert read.json()["variants"] is None


async def test_reading_an_image_file_lists_its_variants(api: Api) -> None:
    file_id = await _upload_direct(api, png_with_alpha(), "logo.png", "image/png")
    variants = await _variants(api, file_id)

    read = await api.app_client.get(f"/v1/files/{file_id}", headers=api.headers())
    assert read.status_code == 200, read.text
    listed = {v["name"]: v for v in read.json()["variants"]}
    assert set(listed) == set(variants)
    small = listed["small"]
    assert (small["status"], small["width"], small["height"]) == ("ready", 256, 192)
    assert small["content_type"] == "image/webp"
    assert (await _fetch(api, small["download_url"])).size == (256, 192)


async def test_multipart_jpeg_gets_variants(api: Api) -> None:
    file_id = await upload_in_one_part(api, jpeg_rotated_with_gps(), filename="banner.jpg")

    variants = await _variants(api, file_id)

    assert (variants["thumbnail"]["width"], variants["thumbnail"]["height"]) == (384, 512)
    assert {v["status"] for v in variants.values()} == {"ready"}
