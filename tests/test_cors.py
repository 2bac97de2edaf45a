"""CORS: browsers talk to the API and to the bucket; both must let the web app in.

The API's rules come from ``CORS_ORIGINS`` (CORSMiddleware); the bucket's
from ``uploadsvc storage init`` (``Storage.initialize``), checked here
against LocalStack, which answers preflights from the bucket's CORS rules as
S3 does. With the local backend the app serves the storage URLs itself, so
the API's rules cover them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import Api

APP_ORIGIN = "http://app.example.test"
OTHER_ORIGIN = "http://evil.example.test"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"cors_origins": [APP_ORIGIN]}


async def preflight(api: Api, url: str, origin: str, method: str, headers: str) -> Any:
    return await api.app_client.options(
        url,
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": method,
            "Access-Control-Request-Headers": headers,
        },
    )


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_the_api_answers_preflights_from_configured_origins_only(api: Api) -> None:
    allowed = await preflight(
        api, "/v1/uploads/request-url", APP_ORIGIN, "POST", "authorization,content-type"
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
    assert "authorization" in allowed.headers["access-control-allow-headers"].lower()

    refused = await preflight(
        api, "/v1/uploads/request-url", OTHER_ORIGIN, "POST", "authorization,content-type"
    )
    assert "access-control-allow-origin" not in refused.headers

    listed = await api.app_client.get("/v1/files", headers={**api.headers(), "Origin": APP_ORIGIN})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == APP_ORIGIN


@pytest.mark.parametrize("backend", ["pg-s3", "sqlite-local"], indirect=True)
async def test_a_browser_may_put_to_storage_and_read_the_etag(api: Api) -> None:
    await api.resources.storage.initialize(cors_origins=[APP_ORIGIN])
    body = b"from a browser\n"
    grant = await api.grant(body)

    allowed = await preflight(
        api, grant["upload_url"], APP_ORIGIN, "PUT", "content-type,if-none-match"
    )
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "PUT" in allowed.headers["access-control-allow-methods"]

    refused = await preflight(
        api, grant["upload_url"], OTHER_ORIGIN, "PUT", "content-type,if-none-match"
    )
    assert "access-control-allow-origin" not in refused.headers

    put = await api.app_client.put(
        grant["upload_url"], content=body, headers={**grant["headers"], "Origin": APP_ORIGIN}
    )
    assert put.status_code == 200, put.text
    assert put.headers["access-control-allow-origin"] == APP_ORIGIN
    # Multipart clients (the demo page, Uppy) must read each part's ETag.
    assert "etag" in put.headers["access-control-expose-headers"].lower()


@pytest.mark.parametrize("backend", ["pg-s3"], indirect=True)
async def test_the_bucket_lets_configured_origins_post_uploads(api: Api) -> None:
    await api.resources.storage.initialize(cors_origins=[APP_ORIGIN])
    params = (
        await api.app_client.get(
            "/v1/s3/params",
            params={"filename": "a.pdf", "type": "application/pdf"},
            headers=api.headers(),
        )
    ).json()
    allowed = await preflight(api, params["url"], APP_ORIGIN, "POST", "content-type")
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "POST" in allowed.headers["access-control-allow-methods"]
