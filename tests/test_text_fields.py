"""Text that PostgreSQL cannot hold (a NUL) is refused at the schema: 422, nothing written.

Each case puts a NUL into one string of one route's JSON body, query or
path, on PostgreSQL, and expects the validation problem that names the
field rather than the 500 the database's ``invalid byte sequence`` was.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.conftest import Api, make_settings
from uploadsvc.app import create_app
from uploadsvc.schemas.text import NO_NUL_PATTERN

on_postgresql = pytest.mark.parametrize("backend", ["pg-s3"])

NUL = "a\x00b"
_FILE = {"filename": "notes.txt", "content_type": "text/plain", "size": 5}
_PARTS = {"parts": [{"part_number": 1, "etag": NUL}]}


async def _start_multipart(api: Api) -> dict[str, Any]:
    response = await api.app_client.post(
        "/v1/s3/multipart",
        json={"filename": "notes.txt", "type": "text/plain"},
        headers=api.headers(),
    )
    assert response.status_code == 200, response.text
    started: dict[str, Any] = response.json()
    return started


def _assert_refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [error["loc"][-1] for error in problem["errors"]] == [field], problem


@on_postgresql
@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/uploads/request-url", {**_FILE, "filename": NUL}, "filename"),
        ("/v1/uploads/request-url", {**_FILE, "content_type": NUL}, "content_type"),
        ("/v1/uploads/multipart", {**_FILE, "filename": NUL}, "filename"),
        ("/v1/uploads/confirm", {"file_key": NUL}, "file_key"),
        ("/v1/events/import", {"file_key": NUL}, "file_key"),
        ("/v1/s3/multipart", {"filename": NUL, "type": "text/plain"}, "filename"),
        ("/v1/s3/multipart", {"filename": "a.txt", "type": NUL}, "type"),
    ],
)
async def test_a_nul_in_a_json_field_is_a_422(
    api: Api, path: str, body: dict[str, Any], field: str
) -> None:
    response = await api.app_client.post(path, json=body, headers=api.headers())
    _assert_refused(response, field)
    await api.assert_nothing_left()


@on_postgresql
async def test_a_nul_in_a_part_etag_is_a_422(api: Api) -> None:
    started = await api.app_client.post(
        "/v1/uploads/multipart", json={**_FILE, "size": 6 * 1024 * 1024}, headers=api.headers()
    )
    assert started.status_code == 201, started.text
    upload_id = started.json()["upload_id"]
    response = await api.app_client.post(
        f"/v1/uploads/{upload_id}/complete", json=_PARTS, headers=api.headers()
    )
    _assert_refused(response, "etag")
    assert await api.status_of(upload_id) == "pending"


@on_postgresql
async def test_a_nul_in_an_uppy_etag_key_or_upload_id_is_a_422(api: Api) -> None:
    started = await _start_multipart(api)
    base = f"/v1/s3/multipart/{started['uploadId']}"
    complete = await api.app_client.post(
        f"{base}/complete",
        params={"key": started["key"]},
        json={"parts": [{"PartNumber": 1, "ETag": NUL}]},
        headers=api.headers(),
    )
    _assert_refused(complete, "ETag")
    listed = await api.app_client.get(base, params={"key": NUL}, headers=api.headers())
    _assert_refused(listed, "key")
    by_id = await api.app_client.get(
        "/v1/s3/multipart/a%00b", params={"key": started["key"]}, headers=api.headers()
    )
    _assert_refused(by_id, "uploadId")


@on_postgresql
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"filename": NUL, "type": "text/plain"}, "filename"),
        ({"filename": "a.txt", "type": NUL}, "type"),
        (
            {"filename": "a.txt", "type": "text/plain", "metadata[purpose]": NUL},
            "metadata[purpose]",
        ),
    ],
)
async def test_a_nul_in_an_uppy_query_is_a_422(
    api: Api, params: dict[str, str], field: str
) -> None:
    response = await api.app_client.get("/v1/s3/params", params=params, headers=api.headers())
    _assert_refused(response, field)
    await api.assert_nothing_left()


@on_postgresql
async def test_a_nul_in_a_query_of_the_raw_upload_or_the_file_list_is_a_422(api: Api) -> None:
    raw = await api.app_client.put(
        "/v1/uploads/direct",
        params={"filename": NUL},
        content=b"hello",
        headers={**api.headers(), "Content-Type": "text/plain"},
    )
    _assert_refused(raw, "filename")
    listed = await api.app_client.get("/v1/files", params={"cursor": NUL}, headers=api.headers())
    _assert_refused(listed, "cursor")
    await api.assert_nothing_left()


def _strings(schema: dict[str, Any], document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every plain string schema inside ``schema``, following ``$ref`` into components."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return _strings(document["components"]["schemas"][name], document)
    found = [schema] if schema.get("type") == "string" else []
    nested = [*schema.get("properties", {}).values(), *schema.get("anyOf", [])]
    if isinstance(schema.get("items"), dict):
        nested.append(schema["items"])
    for inner in nested:
        found.extend(_strings(inner, document))
    return found


def test_every_string_a_route_takes_documents_the_rule(tmp_path: Any) -> None:
    """No request string is a plain ``str``: the rule cannot be forgotten on a new route."""
    assert re.search(NO_NUL_PATTERN, NUL) is None
    document = create_app(make_settings("sqlite-local", tmp_path=tmp_path)).openapi()
    unchecked = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            schemas = [parameter["schema"] for parameter in operation.get("parameters", [])]
            content = operation.get("requestBody", {}).get("content", {})
            schemas.extend(body["schema"] for body in content.values() if "schema" in body)
            for schema in schemas:
                for string in _strings(schema, document):
                    if "enum" in string or string.get("format") in ("uuid", "binary"):
                        continue
                    pattern = string.get("pattern")
                    if pattern is None or re.search(pattern, NUL):
                        unchecked.append((method, path, string))
    assert unchecked == []
