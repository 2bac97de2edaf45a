"""The demo page's route: its files, its security headers, nothing else served.

tests/test_browser.py runs the page itself in Chromium.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Api, make_settings
from uploadsvc.routers.demo import content_security_policy, storage_origins


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_demo_page_and_its_files_are_served_with_a_csp(api: Api) -> None:
    page = await api.app_client.get("/demo")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert '<script src="/demo/demo.js" defer></script>' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    # The local backend's URLs point at the service itself.
    assert f"connect-src 'self' {api.settings.public_base_url}" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"

    script = await api.app_client.get("/demo/demo.js")
    assert script.status_code == 200
    assert script.headers["content-type"] == "text/javascript; charset=utf-8"
    assert "MULTIPART_THRESHOLD" in script.text
    style = await api.app_client.get("/demo/demo.css")
    assert style.status_code == 200
    assert style.headers["content-type"] == "text/css; charset=utf-8"


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
@pytest.mark.parametrize(
    "path", ["/demo/index.html", "/demo/nope.js", "/demo/..%2F..%2Fconfig.py", "/demo/%2e%2e"]
)
async def test_demo_serves_nothing_but_its_own_files(api: Api, path: str) -> None:
    response = await api.app_client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("backend", ["sqlite-local"], indirect=True)
async def test_demo_is_not_part_of_the_api_document(api: Api) -> None:
    document = (await api.app_client.get("/openapi.json")).json()
    assert not [path for path in document["paths"] if path.startswith("/demo")]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"s3_endpoint_url": "http://127.0.0.1:4566", "s3_addressing_style": "path"},
            ["http://127.0.0.1:4566"],
        ),
        (
            {
                "s3_endpoint_url": "http://minio:9000",
                "s3_public_endpoint_url": "https://files.example.com/",
                "s3_addressing_style": "virtual",
            },
            ["https://files.example.com", "https://*.files.example.com"],
        ),
        ({}, ["https://*.amazonaws.com"]),
    ],
)
def test_csp_lets_the_page_reach_the_storage_that_presigned_urls_name(
    tmp_path: Path, overrides: dict[str, str], expected: list[str]
) -> None:
    settings = make_settings("pg-s3", tmp_path=tmp_path, **overrides)
    assert storage_origins(settings) == expected
    assert f"connect-src 'self' {' '.join(expected)};" in content_security_policy(settings)
