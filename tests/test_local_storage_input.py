"""The local backend's storage route answers hostile input with a 4xx, never a 500.

A signature or a Content-Length that is not ASCII used to reach
``hmac.compare_digest`` or ``int()`` and raise (docs/api.md, "Security bounds").
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.conftest import Api
from tests.support.files import TEXT_LINE, sha256_b64
from uploadsvc.errors import PreconditionFailed
from uploadsvc.profiles import staging_key
from uploadsvc.storage.local import LocalStorage

pytestmark = pytest.mark.parametrize("backend", ["sqlite-local"])


def _with_signature(url: str, signature: str) -> str:
    parts = urlsplit(url)
    query = [(k, signature if k == "X-Signature" else v) for k, v in parse_qsl(parts.query)]
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.mark.parametrize("signature", ["é" * 64, "\u202e", "😀"])
async def test_a_non_ascii_signature_is_a_403(api: Api, signature: str) -> None:
    grant = await api.grant(TEXT_LINE)
    put = await api.app_client.put(
        _with_signature(grant["upload_url"], signature), content=TEXT_LINE, headers=grant["headers"]
    )
    assert put.status_code == 403, put.text
    assert put.json()["code"] == "signature_mismatch"
    assert await api.stored_keys() == []

    await api.put(grant, TEXT_LINE)
    confirmed = await api.confirm(grant["file_key"])
    download = confirmed.json()["download_url"]
    get = await api.app_client.get(_with_signature(download, signature))
    assert get.status_code == 403, get.text
    assert get.json()["code"] == "signature_mismatch"


async def test_a_content_length_of_non_ascii_digits_is_refused(api: Api) -> None:
    grant = await api.grant(TEXT_LINE)
    request = api.app_client.build_request(
        "PUT", grant["upload_url"], content=TEXT_LINE, headers=grant["headers"]
    )
    # h11 and httptools refuse it before the app; the route must not rely on that.
    request.headers["Content-Length"] = "²"
    response: httpx.Response = await api.app_client.send(request)
    assert response.status_code == 411, response.text
    assert await api.stored_keys() == []


async def test_a_publish_that_loses_the_race_changes_neither_bytes_nor_checksum(api: Api) -> None:
    # Two PUTs of one URL at once both pass the route's existence check; the
    # one that publishes second must lose whole, its metadata included.
    storage = api.resources.storage
    assert isinstance(storage, LocalStorage)
    key = "staging/uploads/alice/2026/01/01/race.txt"
    first, second = b"first bytes\n", b"second bytes\n"
    await storage.put_stream(key, content_type="text/plain", chunks=_chunks(first))
    with pytest.raises(PreconditionFailed):
        await storage.put_stream(key, content_type="text/csv", chunks=_chunks(second))
    info = await storage.head(key)
    assert info is not None
    assert (info.sha256, info.content_type) == (sha256_b64(first), "text/plain")
    assert await storage.read_prefix(key, 100) == first


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def test_a_promote_that_finds_the_key_claimed_leaves_the_staged_object(api: Api) -> None:
    # Two confirms at once: one has linked the file key's metadata (its claim)
    # and has yet to link the staged file. The other must not delete that file.
    storage = api.resources.storage
    assert isinstance(storage, LocalStorage)
    key = "uploads/alice/2026/01/01/claimed.txt"
    staged = staging_key(key)
    await storage.put_stream(staged, content_type="text/plain", chunks=_chunks(TEXT_LINE))
    claim = storage._meta_path(key)
    claim.parent.mkdir(parents=True)
    claim.write_text('{"content_type": "text/plain"}')
    await storage.promote(staged, key)
    assert await storage.read_prefix(staged, 100) == TEXT_LINE
