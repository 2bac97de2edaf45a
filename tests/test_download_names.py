"""A download is saved under a name whose extension is the checked type's.

Operating systems open files by extension: a zip named ``tool.jar`` runs as
Java, JScript checked as text named ``invoice.js`` runs as a script, and
U+202E turns ``invoice\u202efdp.exe`` into what reads as ``invoiceexe.pdf``.
Tested on the real download URLs (S3 and the local backend), whose
``Content-Disposition`` comes back on the GET.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests import samples
from tests.conftest import Api

pytestmark = pytest.mark.parametrize("backend", ["pg-s3", "sqlite-local"])

JSCRIPT = b'var shell = new ActiveXObject("WScript.Shell");\nshell.Run("calc.exe");\n'
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


async def _saved_as(api: Api, url: str) -> str:
    response = await api.app_client.get(url)
    assert response.status_code == 200, response.text
    disposition: str = response.headers["content-disposition"]
    return disposition


async def _presigned(api: Api, body: bytes, filename: str, content_type: str) -> dict[str, Any]:
    return await api.upload(body, filename=filename, content_type=content_type)


@pytest.mark.parametrize(
    ("body", "filename", "content_type", "saved_as"),
    [
        (samples.zip_archive(), "tool.jar", "application/zip", "tool.jar.zip"),
        (JSCRIPT, "invoice.js", "text/plain", "invoice.js.txt"),
        (PDF, "invoice\u202efdp.exe", "application/pdf", "invoicefdp.exe.pdf"),
        (samples.png(), "photo.jpg", "image/png", "photo.png"),
        (PDF, "Report.PDF", "application/pdf", "Report.PDF"),
        (b"plain notes\n", "NOTES", "text/plain", "NOTES.txt"),
    ],
    ids=["jar-zip", "js-text", "rtl-override", "wrong-image-ext", "right-ext", "no-ext"],
)
async def test_presigned_downloads_get_the_checked_types_extension(
    api: Api, body: bytes, filename: str, content_type: str, saved_as: str
) -> None:
    file = await _presigned(api, body, filename, content_type)
    assert f'filename="{saved_as}"' in await _saved_as(api, file["download_url"])
    again = await api.app_client.get(f"/v1/files/{file['file_id']}/download", headers=api.headers())
    assert f'filename="{saved_as}"' in await _saved_as(api, again.json()["download_url"])


async def test_format_characters_are_removed_from_stored_names(api: Api) -> None:
    name = "\u202ein\u200bvoice\u2066\u0085.pdf"
    file = await _presigned(api, PDF, name, "application/pdf")
    assert file["filename"] == "invoice.pdf"
    listed = await api.app_client.get("/v1/files", headers=api.headers())
    assert listed.json()["items"][0]["filename"] == "invoice.pdf"


async def test_direct_uploads_follow_the_same_rule(api: Api) -> None:
    response = await api.app_client.post(
        "/v1/uploads/direct",
        files={"file": ("tool.jar", samples.zip_archive(), "application/zip")},
        headers=api.headers(),
    )
    assert response.status_code == 201, response.text
    assert 'filename="tool.jar.zip"' in await _saved_as(api, response.json()["download_url"])

    opened = await api.app_client.post(
        "/v1/upload/file",
        files={"file": ("run.js", JSCRIPT, "application/octet-stream")},
        headers=api.headers(),
    )
    assert opened.status_code == 200, opened.text
    assert 'filename="run.js.txt"' in await _saved_as(api, opened.json()["url"])


async def test_a_data_uri_image_is_named_from_its_type(api: Api) -> None:
    data = "data:image/png;base64," + base64.b64encode(samples.png()).decode()
    response = await api.app_client.post(
        "/v1/upload/image", json={"data": data}, headers=api.headers()
    )
    assert response.status_code == 200, response.text
    assert await _saved_as(api, response.json()["url"]) == 'inline; filename="image.png"'
    listed = await api.app_client.get("/v1/files", headers=api.headers())
    assert [item["filename"] for item in listed.json()["items"]] == ["image.png"]
