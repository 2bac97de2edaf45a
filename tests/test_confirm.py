"""Confirm: what it rejects, and that it is idempotent and race-safe."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.conftest import Api
from tests.support.files import HTML, PNG_SIGNATURE, png, zip_archive


async def _assert_rejected(api: Api, grant: dict[str, Any], code: str) -> None:
    response = await api.confirm(grant["file_key"])
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    assert not await api.object_exists(grant["file_key"])
    assert await api.status_of(grant["upload_id"]) == "rejected"
    # Asking again gives the same answer and still records nothing.
    again = await api.confirm(grant["file_key"])
    assert again.status_code == 422
    assert again.json()["code"] == code
    assert (await api.app_client.get("/v1/files", headers=api.headers())).json()["items"] == []


async def test_png_upload_is_confirmed(api: Api) -> None:
    image = png()
    file = await api.upload(image, filename="pic.png", content_type="image/png", purpose="avatar")
    assert file["file_key"].startswith("users/alice/avatar/")
    assert file["file_key"].endswith(".png")


async def test_size_differing_from_the_declared_one_is_rejected(api: Api) -> None:
    grant = await api.grant(b"twelve bytes")
    # Storage holds more bytes than were declared (planted past the signed URL).
    await api.plant(grant["file_key"], b"twelve bytes and then some", "text/plain")
    await _assert_rejected(api, grant, "size_mismatch")


async def test_zero_byte_object_is_rejected(api: Api) -> None:
    grant = await api.grant(b"something")
    await api.plant(grant["file_key"], b"", "text/plain")
    await _assert_rejected(api, grant, "empty_object")


@pytest.mark.parametrize("body", [zip_archive(), HTML], ids=["zip-as-png", "html-as-png"])
async def test_bytes_of_another_type_under_image_png_are_rejected(api: Api, body: bytes) -> None:
    grant = await api.grant(body, content_type="image/png", filename="innocent.png")
    assert (await api.put(grant, body)).status_code == 200
    await _assert_rejected(api, grant, "type_mismatch")


async def test_png_header_followed_by_html_is_rejected(api: Api) -> None:
    body = PNG_SIGNATURE + HTML * 4
    grant = await api.grant(body, content_type="image/png")
    assert (await api.put(grant, body)).status_code == 200
    await _assert_rejected(api, grant, "type_mismatch")


async def test_second_confirm_returns_the_same_body(api: Api) -> None:
    grant = await api.grant(b"idempotent\n")
    assert (await api.put(grant, b"idempotent\n")).status_code == 200
    first = await api.confirm(grant["file_key"])
    second = await api.app_client.post(
        f"/v1/uploads/{grant['upload_id']}/confirm", headers=api.headers()
    )
    assert first.status_code == second.status_code == 200
    # The download URL is freshly signed each time; everything else is identical.
    first_body, second_body = first.json(), second.json()
    assert first_body.pop("download_url")
    assert second_body.pop("download_url")
    assert first_body == second_body


def _confirmed_total() -> float:
    return REGISTRY.get_sample_value("uploadsvc_uploads_confirmed_total") or 0.0


@pytest.mark.parametrize("backend", ["pg-s3", "sqlite-local"])
async def test_twenty_concurrent_confirms_make_one_transition(api: Api) -> None:
    body = png()
    grant = await api.grant(body, content_type="image/png")
    assert (await api.put(grant, body)).status_code == 200
    before = _confirmed_total()

    responses = await asyncio.gather(*(api.confirm(grant["file_key"]) for _ in range(20)))

    assert [r.status_code for r in responses] == [200] * 20, [r.text for r in responses]
    assert {r.json()["file_id"] for r in responses} == {grant["upload_id"]}
    assert {r.json()["confirmed_at"] for r in responses} == {responses[0].json()["confirmed_at"]}
    assert _confirmed_total() - before == 1
    assert await api.status_of(grant["upload_id"]) == "confirmed"


async def test_confirm_of_an_unknown_key_is_404(api: Api) -> None:
    response = await api.confirm("uploads/alice/2026/01/01/nothing.txt")
    assert response.status_code == 404
    assert response.json()["code"] == "upload_not_found"
