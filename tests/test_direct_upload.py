"""Direct uploads through the service: streamed, checked first, nothing left on failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import Api
from tests.support.files import (
    HTML,
    PNG_SIGNATURE,
    MiB,
    data_uri,
    pdf,
    plain_text,
    png,
    sha256_b64,
    sha256_hex,
)
from uploadsvc.storage import S3Storage

LIMIT = 12 * MiB  # above one 8 MiB part, so over-limit uploads start a multipart upload

# The start of a multipart body whose `file` part never ends (boundary "B").
FILE_PART_HEAD = (
    b"--B\r\n"
    b'Content-Disposition: form-data; name="file"; filename="a.txt"\r\n'
    b"Content-Type: text/plain\r\n\r\n"
)

pytestmark = pytest.mark.parametrize("backend", ["pg-s3", "pg-local", "sqlite-local"])


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"max_attachment_bytes": LIMIT}


async def _post_form(
    api: Api, files: list[tuple[str, tuple[str, bytes, str]]], **kw: Any
) -> httpx.Response:
    return await api.app_client.post("/v1/uploads/direct", files=files, headers=api.headers(), **kw)


async def _download(api: Api, url: str) -> bytes:
    response = await api.app_client.get(url)
    assert response.status_code == 200, response.text
    return response.content


async def test_multipart_direct_upload_is_confirmed_and_downloadable(api: Api) -> None:
    image = png()
    response = await api.app_client.post(
        "/v1/uploads/direct",
        data={"purpose": "avatar"},
        files={"file": ("me.png", image, "image/png")},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    file = response.json()
    assert file["status"] == "confirmed"
    assert file["file_key"].startswith("users/alice/avatar/")
    assert file["size_bytes"] == len(image)
    assert file["sha256"] == sha256_b64(image)
    assert await _download(api, file["download_url"]) == image
    listed = await api.app_client.get("/v1/files", headers=api.headers())
    assert [item["file_id"] for item in listed.json()["items"]] == [file["file_id"]]


@pytest.mark.parametrize("route", ["multipart", "raw"])
async def test_large_direct_upload_streams_in_parts(api: Api, route: str) -> None:
    body = plain_text(10 * MiB + 12345)  # two parts on S3; several batches for the hashing thread
    if route == "multipart":
        response = await _post_form(api, [("file", ("big.txt", body, "text/plain"))])
    else:
        response = await api.app_client.put(
            "/v1/uploads/direct?filename=big.txt",
            content=body,
            headers={**api.headers(), "Content-Type": "text/plain"},
        )
    assert response.status_code == 201, response.text
    file = response.json()
    assert file["size_bytes"] == len(body)
    assert file["sha256"] == sha256_b64(body)
    assert await _download(api, file["download_url"]) == body
    assert await api.resources.storage.list_incomplete_uploads("") == []
    assert await api.open_multipart_keys() == []


@pytest.mark.parametrize("size", [5000, 10 * MiB + 12345], ids=["one-put", "two-parts"])
async def test_s3_requests_are_signed_with_the_hash_of_their_body(api: Api, size: int) -> None:
    # The part's SHA-256 is computed in a thread and handed to the signer;
    # LocalStack does not check X-Amz-Content-SHA256 against the body (AWS does).
    storage = api.resources.storage
    if not isinstance(storage, S3Storage):
        pytest.skip("S3 only")
    signed: list[tuple[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        request.body.seek(0)
        sent = sha256_hex(request.body.read())
        request.body.seek(0)
        signed.append((request.headers["X-Amz-Content-SHA256"].decode(), sent))

    events = storage._client.meta.events
    for operation in ("PutObject", "UploadPart"):
        events.register(f"before-send.s3.{operation}", capture, unique_id=f"test-{operation}")
    try:
        body = plain_text(size)
        response = await _post_form(api, [("file", ("big.txt", body, "text/plain"))])
    finally:
        for operation in ("PutObject", "UploadPart"):
            events.unregister(f"before-send.s3.{operation}", unique_id=f"test-{operation}")
    assert response.status_code == 201, response.text
    assert await _download(api, response.json()["download_url"]) == body
    assert len(signed) == (1 if size < 8 * MiB else 2)
    assert all(header == sent for header, sent in signed), signed


async def test_raw_put_direct_upload(api: Api) -> None:
    document = pdf(5000)
    response = await api.app_client.put(
        "/v1/uploads/direct?filename=report.pdf",
        content=document,
        headers={**api.headers(), "Content-Type": "application/pdf"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["content_type"] == "application/pdf"
    assert await _download(api, response.json()["download_url"]) == document


@pytest.mark.parametrize(
    ("part", "status", "code"),
    [
        (("x.png", HTML, "image/png"), 422, "type_mismatch"),
        (("x.png", PNG_SIGNATURE + HTML * 3, "image/png"), 422, "type_mismatch"),
        (
            (
                "x.svg",
                b'<svg xmlns="http://www.w3.org/2000/svg"><script>1</script></svg>',
                "image/svg+xml",
            ),
            415,
            "unsupported_type",
        ),
        (
            ("x.pdf", b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "application/pdf"),
            422,
            "type_mismatch",
        ),
        (("x.html", HTML, "text/html"), 415, "unsupported_type"),
        (("x.txt", b"", "text/plain"), 422, "empty_object"),
    ],
    ids=["html-as-png", "png-header-then-html", "svg", "elf-as-pdf", "html", "empty"],
)
async def test_refused_files_leave_nothing(
    api: Api, part: tuple[str, bytes, str], status: int, code: str
) -> None:
    response = await _post_form(api, [("file", part)])
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    await api.assert_nothing_left()


async def test_a_purpose_field_after_the_file_is_refused(api: Api) -> None:
    # httpx sends data fields before files: build the body by hand.
    body = (
        b'--b\r\nContent-Disposition: form-data; name="file"; filename="me.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + png() + b"\r\n"
        b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\navatar\r\n--b--\r\n'
    )
    response = await api.app_client.post(
        "/v1/uploads/direct",
        content=body,
        headers={**api.headers(), "Content-Type": "multipart/form-data; boundary=b"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    await api.assert_nothing_left()


async def test_form_without_a_file_is_refused(api: Api) -> None:
    response = await api.app_client.post(
        "/v1/uploads/direct",
        data={"purpose": "avatar"},
        files={"other": ("a", b"a", "text/plain")},
        headers=api.headers(),
    )
    assert response.status_code == 422
    assert response.json()["code"] == "missing_file"


async def test_non_multipart_and_truncated_bodies_are_refused(api: Api) -> None:
    plain = await api.app_client.post(
        "/v1/uploads/direct",
        content=b"hello",
        headers={**api.headers(), "Content-Type": "text/plain"},
    )
    assert plain.status_code == 415
    assert plain.json()["code"] == "expected_multipart"
    truncated = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'
        b"Content-Type: text/plain\r\n\r\n" + plain_text(100)
    )
    response = await api.app_client.post(
        "/v1/uploads/direct",
        content=truncated,
        headers={**api.headers(), "Content-Type": "multipart/form-data; boundary=XyZ"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "malformed_multipart"
    await api.assert_nothing_left()


async def test_honest_oversize_length_is_refused_before_reading(api: Api) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(20):
            pulled += MiB
            yield b"x" * MiB

    response = await api.app_client.put(
        "/v1/uploads/direct?filename=big.txt",
        content=body(),
        headers={**api.headers(), "Content-Type": "text/plain", "Content-Length": str(20 * MiB)},
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert pulled == 0  # refused on the Content-Length: not one chunk was read
    await api.assert_nothing_left()


@pytest.mark.parametrize("route", ["multipart", "raw"])
async def test_lying_length_is_cut_off_within_one_chunk_of_the_limit(api: Api, route: str) -> None:
    chunk = 64 * 1024
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        if route == "multipart":
            head = FILE_PART_HEAD
            pulled += len(head)
            yield head
        line = plain_text(chunk)
        for _ in range(2 * LIMIT // chunk):
            pulled += chunk
            yield line

    content_type = "multipart/form-data; boundary=B" if route == "multipart" else "text/plain"
    url = "/v1/uploads/direct" + ("" if route == "multipart" else "?filename=a.txt")
    method = api.app_client.post if route == "multipart" else api.app_client.put
    response = await method(
        url,
        content=body(),
        headers={**api.headers(), "Content-Type": content_type, "Content-Length": "1000"},
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_large"
    assert LIMIT < pulled <= LIMIT + 2 * chunk, pulled
    await api.assert_nothing_left()


async def test_client_disconnect_mid_body_leaves_nothing(api: Api) -> None:
    class Disconnected(Exception):
        pass

    async def body() -> AsyncIterator[bytes]:
        head = FILE_PART_HEAD
        yield head
        for _ in range(160):  # 10 MiB: the first 8 MiB part is already in storage
            yield plain_text(64 * 1024)
        raise Disconnected

    with pytest.raises(Disconnected):
        await api.app_client.post(
            "/v1/uploads/direct",
            content=body(),
            headers={**api.headers(), "Content-Type": "multipart/form-data; boundary=B"},
        )
    await asyncio.sleep(0.2)
    await api.assert_nothing_left()


# --- Open Event routes ------------------------------------------------------------


async def test_open_event_single_file_returns_one_url(api: Api) -> None:
    response = await api.app_client.post(
        "/v1/upload/file",
        files={"file": ("slides.pdf", pdf(3000), "application/octet-stream")},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    url = response.json()["url"]
    assert isinstance(url, str)
    # No Authorization header (the client sends none by default): the URL
    # itself grants access until it expires.
    assert "authorization" not in api.app_client.headers
    assert (await _download(api, url)).startswith(b"%PDF-1.4")


async def test_open_event_several_files_return_a_list(api: Api) -> None:
    files = [
        ("files[]", ("a.png", png(), "image/png")),
        ("files[]", ("b.txt", b"hello\n", "text/plain")),
    ]
    response = await api.app_client.post("/v1/upload/file", files=files, headers=api.headers())
    assert response.status_code == 200, response.text
    urls = response.json()["url"]
    assert len(urls) == 2
    assert await _download(api, urls[1]) == b"hello\n"


async def test_open_event_refused_file_removes_the_ones_before_it(api: Api) -> None:
    files = [
        ("files[]", ("a.png", png(), "image/png")),
        ("files[]", ("b.txt", b"hello\n", "text/plain")),
        ("files[]", ("evil.png", HTML, "image/png")),
    ]
    response = await api.app_client.post("/v1/upload/file", files=files, headers=api.headers())
    assert response.status_code == 415, response.text
    await api.assert_nothing_left()


async def test_open_event_base64_image(api: Api) -> None:
    image = png()
    data = data_uri("image/png", image)
    response = await api.app_client.post(
        "/v1/upload/image", json={"data": data}, headers=api.headers()
    )
    assert response.status_code == 200, response.text
    assert await _download(api, response.json()["url"]) == image


@pytest.mark.parametrize(
    ("data", "status", "code"),
    [
        (data_uri("image/png", HTML), 422, "type_mismatch"),
        (data_uri("image/svg+xml", b"<svg/>"), 415, "unsupported_type"),
        ("data:image/png;base64,!!!notbase64", 422, "invalid_data_uri"),
        ("https://example.com/a.png", 422, "invalid_data_uri"),
        ("data:image/png;base64," + "A" * (LIMIT * 4 // 3 + 100), 413, "too_large"),
    ],
    ids=["html-as-png", "svg", "bad-base64", "not-a-data-uri", "too-large"],
)
async def test_open_event_bad_images_are_refused(
    api: Api, data: str, status: int, code: str
) -> None:
    response = await api.app_client.post(
        "/v1/upload/image", json={"data": data}, headers=api.headers()
    )
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    await api.assert_nothing_left()


async def test_force_local_needs_the_local_backend(api: Api) -> None:
    response = await api.app_client.post(
        "/v1/upload/file?force_local=true",
        files={"file": ("a.txt", b"hello\n", "text/plain")},
        headers=api.headers(),
    )
    if api.settings.storage_backend == "local":
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert response.json()["code"] == "force_local_unavailable"
        await api.assert_nothing_left()
