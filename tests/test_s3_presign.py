"""The fast presigner makes botocore's URLs, byte for byte, and strict S3 honours them.

botocore is the oracle: a sync botocore client configured as S3Storage
configures its clients, its clock stopped at ``NOW`` (``botocore.auth``
reads it through ``get_current_datetime``), and the presigner given the same
instant. Then LocalStack (strict signature checks) takes the URLs for real.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import importlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aioboto3
import botocore.auth
import botocore.session
import httpx
import pytest
from aiobotocore.credentials import AioRefreshableCredentials
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials, RefreshableCredentials
from botocore.exceptions import NoCredentialsError

from tests.support.localstack import LocalStackServer
from uploadsvc.config import Settings
from uploadsvc.storage.base import GetGrant, PartGrant, PutGrant
from uploadsvc.storage.s3 import S3Storage, open_s3_storage
from uploadsvc.storage.s3_presign import (
    MAX_EXPIRES_SECONDS,
    BucketEndpoint,
    S3Presigner,
    open_presigner,
    resolve_bucket_endpoint,
)

NOW = dt.datetime(2026, 5, 9, 23, 59, 58)
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEHoaCXVzLWVhc3QtMSJH+/token=="
BUCKET = "uploads-bucket"

KEYS = [
    "plain.txt",
    "uploads/alice/2026/05/09/0b6e1f9c2d6d4e0a9a3b.pdf",
    "with space/and  two  spaces.txt",
    "plus+sign+.png",
    "percent%20-%2F-%.txt",
    "~tilde/~file~",
    "double//slash///triple",
    "/leading-slash",
    "trailing-slash/",
    "ünïcødé/日本語のファイル.png",
    "emoji-😀-🚀.jpg",
    "reserved !*'();:@&=$,?#[]{}|^`\"<>\\.bin",
    "tab\tand\nnewline",
    "k" * 1024,
    "uploads/" + "é" * 508,  # 1,024 bytes in UTF-8
]
assert all(len(key.encode()) <= 1024 for key in KEYS)
assert len(KEYS[-1].encode()) == 1024

SHA256 = base64.b64encode(hashlib.sha256(b"body").digest()).decode()
# (content type, length, checksum): the signed-header sets a PUT may carry.
PUT_HEADERS = [
    ("text/plain", 12, None),
    ("image/png", 5 * 1024 * 1024, SHA256),
    ("application/pdf", 1, "q+/zlTeUtJ3BnmZeDuPBlS8Zvho+p+B6/eC8+FhpT/E="),
    ("  text/plain;   charset=utf-8  ", 0, SHA256),  # SigV4 trims and folds blanks
    # botocore leaves exactly this value out of the signature; so must we.
    ("application/x-www-form-urlencoded; charset=utf-8", 10, None),
]
GET_OVERRIDES = [
    ("application/pdf", "attachment"),
    ("text/plain; charset=utf-8", 'attachment; filename="a b+c.txt"'),
    ("image/png", "inline; filename*=UTF-8''%C3%A9t%C3%A9%20%2B%20%7E.png"),
    ("application/octet-stream", 'attachment; filename="naïve ~ 100%.bin"'),
]
PARTS = [("2~abc+def/ghi=", 1, 5 * 1024 * 1024), ("upload id with spaces", 10_000, None)]


@dataclass(frozen=True)
class Setup:
    """How S3Storage's clients could be configured: addressing style, endpoint, region."""

    style: str
    endpoint_url: str | None
    region: str = "us-east-1"
    bucket: str = BUCKET


SETUPS = {
    "path-style-localstack": Setup("path", "http://127.0.0.1:4566"),
    "path-style-custom-port-and-prefix": Setup("path", "https://minio.example.com:9443/s3"),
    "path-style-ipv6": Setup("path", "http://[::1]:9000"),
    "virtual-host-custom-port": Setup("virtual", "http://s3.storage.test:9000", "eu-west-3"),
    "virtual-host-https-default-port": Setup("virtual", "https://S3.Example.COM:443"),
    "virtual-host-on-an-ip-falls-back-to-path": Setup("virtual", "http://10.0.0.7:9000"),
    "auto-custom-endpoint": Setup("auto", "http://localhost:4566", "ap-south-1"),
    "auto-aws-us-east-1": Setup("auto", None),
    "auto-aws-eu-west-3": Setup("auto", None, "eu-west-3"),
    "virtual-aws-eu-west-3": Setup("virtual", None, "eu-west-3"),
    "path-aws-eu-west-3": Setup("path", None, "eu-west-3"),
    "dotted-bucket-on-aws": Setup("auto", None, "us-west-2", "my.dotted.bucket"),
}


@functools.cache
def _botocore_session() -> Any:
    return botocore.session.get_session()


@functools.cache
def botocore_client(setup: Setup, access_key: str, secret_key: str, token: str | None) -> Any:
    # The options of S3Storage's AioConfig that bear on presigned URLs.
    config = Config(
        signature_version="s3v4",
        s3={"addressing_style": setup.style},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return _botocore_session().create_client(
        "s3",
        region_name=setup.region,
        endpoint_url=setup.endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        aws_session_token=token,
        config=config,
    )


@pytest.fixture
def botocore_clock(monkeypatch: pytest.MonkeyPatch) -> Callable[[dt.datetime], None]:
    """Stop botocore's signing clock (at NOW unless told otherwise)."""

    def stop_at(instant: dt.datetime) -> None:
        monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: instant)

    stop_at(NOW)
    return stop_at


def _botocore_put(
    client: Any, bucket: str, key: str, content_type: str, length: int, sha256: str | None
) -> str:
    # The parameters S3Storage.presign_put passes, in its order.
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "ContentType": content_type,
        "ContentLength": length,
        "IfNoneMatch": "*",
    }
    if sha256 is not None:
        params["ChecksumSHA256"] = sha256
    url: str = client.generate_presigned_url("put_object", Params=params, ExpiresIn=900)
    return url


def _botocore_get(client: Any, bucket: str, key: str, content_type: str, disposition: str) -> str:
    url: str = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": bucket,
            "Key": key,
            "ResponseContentType": content_type,
            "ResponseContentDisposition": disposition,
        },
        ExpiresIn=3600,
    )
    return url


def _botocore_part(
    client: Any, bucket: str, key: str, upload_id: str, number: int, length: int | None
) -> str:
    params: dict[str, Any] = {
        "Bucket": bucket,
        "Key": key,
        "UploadId": upload_id,
        "PartNumber": number,
    }
    if length is not None:
        params["ContentLength"] = length
    url: str = client.generate_presigned_url("upload_part", Params=params, ExpiresIn=600)
    return url


async def _presigner_for(setup: Setup, credentials: Any) -> S3Presigner:
    # The endpoint is resolved by a client with other keys: it must not matter.
    probe = botocore_client(setup, "probe", "probe", None)
    return S3Presigner(await resolve_bucket_endpoint(probe, setup.bucket), credentials)


def _signed_headers(url: str) -> str:
    return parse_qs(urlsplit(url).query)["X-Amz-SignedHeaders"][0]


@pytest.mark.parametrize("token", [None, SESSION_TOKEN], ids=["static-keys", "session-token"])
@pytest.mark.parametrize("setup", SETUPS.values(), ids=SETUPS.keys())
async def test_urls_are_botocores_byte_for_byte(
    setup: Setup, token: str | None, botocore_clock: Callable[[dt.datetime], None]
) -> None:
    client = botocore_client(setup, ACCESS_KEY, SECRET_KEY, token)
    presigner = await _presigner_for(setup, Credentials(ACCESS_KEY, SECRET_KEY, token))
    compared = 0
    for key in KEYS:
        for content_type, length, sha256 in PUT_HEADERS:
            expected = _botocore_put(client, setup.bucket, key, content_type, length, sha256)
            got = await presigner.presign_put_object(
                PutGrant(
                    key=key,
                    content_type=content_type,
                    content_length=length,
                    sha256=sha256,
                    expires_in=900,
                ),
                now=NOW,
            )
            assert got == expected, (key, content_type, length, sha256)
            compared += 1
        for content_type, disposition in GET_OVERRIDES:
            expected = _botocore_get(client, setup.bucket, key, content_type, disposition)
            got = await presigner.presign_get_object(
                key,
                expires_in=3600,
                content_type=content_type,
                content_disposition=disposition,
                now=NOW,
            )
            assert got == expected, (key, content_type, disposition)
            compared += 1
        for upload_id, number, part_length in PARTS:
            expected = _botocore_part(client, setup.bucket, key, upload_id, number, part_length)
            got = await presigner.presign_upload_part(
                PartGrant(
                    key=key,
                    multipart_upload_id=upload_id,
                    part_number=number,
                    content_length=part_length,
                    expires_in=600,
                ),
                now=NOW,
            )
            assert got == expected, (key, upload_id, number, part_length)
            compared += 1
    assert compared == len(KEYS) * (len(PUT_HEADERS) + len(GET_OVERRIDES) + len(PARTS))
    # The token is in the URLs when there is one, and only then.
    tokens = parse_qs(urlsplit(got).query).get("X-Amz-Security-Token")
    assert tokens == ([token] if token is not None else None)


@pytest.mark.parametrize(
    "query",
    [
        (("uploadId", "a b"), ("partNumber", "7"), ("x-id", "é")),
        (("zeta", "2"), ("Alpha", "1 x"), ("X-Amz-A", "b"), ("X-Amz-Signed", "~")),
    ],
    ids=["names-after-the-auth-ones", "names-sorting-among-them"],
)
async def test_any_query_is_signed_as_botocores_query_signer_signs_it(
    query: tuple[tuple[str, str], ...], botocore_clock: Callable[[dt.datetime], None]
) -> None:
    # The sorted X-Amz-* part is reused only when every other name sorts
    # after it; botocore's signer, on a request with this query, is the oracle.
    credentials = Credentials(ACCESS_KEY, SECRET_KEY, SESSION_TOKEN)
    presigner = await _presigner_for(SETUPS["path-style-localstack"], credentials)
    got = await presigner.presign("GET", "a b/é", query=query, expires_in=60, now=NOW)
    encoded = "&".join(f"{quote(n, safe='-._~')}={quote(v, safe='-._~')}" for n, v in query)
    request = AWSRequest(method="GET", url=f"{presigner.endpoint.base_url}/a%20b/%C3%A9?{encoded}")
    S3SigV4QueryAuth(credentials, "s3", presigner.endpoint.region, expires=60).add_auth(request)
    assert got == request.url


async def test_signed_headers_are_the_ones_s3storage_signs(
    botocore_clock: Callable[[dt.datetime], None],
) -> None:
    presigner = await _presigner_for(SETUPS["path-style-localstack"], Credentials("a", "b"))
    put = await presigner.presign_put_object(
        PutGrant(key="k", content_type="text/plain", content_length=3, sha256=SHA256, expires_in=60)
    )
    assert _signed_headers(put) == "content-length;content-type;host;if-none-match;" + (
        "x-amz-checksum-sha256"
    )
    put = await presigner.presign_put_object(
        PutGrant(key="k", content_type="text/plain", content_length=3, sha256=None, expires_in=60)
    )
    assert _signed_headers(put) == "content-length;content-type;host;if-none-match"
    get = await presigner.presign_get_object(
        "k", expires_in=60, content_type="text/plain", content_disposition="attachment"
    )
    assert _signed_headers(get) == "host"
    assert parse_qs(urlsplit(get).query)["response-content-disposition"] == ["attachment"]
    part = await presigner.presign_upload_part(
        PartGrant(
            key="k", multipart_upload_id="u", part_number=2, content_length=None, expires_in=60
        )
    )
    assert _signed_headers(part) == "host"
    assert urlsplit(part).query.startswith("uploadId=u&partNumber=2&")


async def test_the_endpoint_is_read_off_botocores_url() -> None:
    virtual = await resolve_bucket_endpoint(
        botocore_client(SETUPS["virtual-host-custom-port"], "a", "b", None), BUCKET
    )
    assert virtual == BucketEndpoint(
        base_url=f"http://{BUCKET}.s3.storage.test:9000",
        host=f"{BUCKET}.s3.storage.test:9000",
        region="eu-west-3",
    )
    path = await resolve_bucket_endpoint(
        botocore_client(SETUPS["path-style-custom-port-and-prefix"], "a", "b", None), BUCKET
    )
    assert path.base_url == f"https://minio.example.com:9443/s3/{BUCKET}"
    assert path.host == "minio.example.com:9443"
    assert path.base_path == f"/s3/{BUCKET}"
    default_port = await resolve_bucket_endpoint(
        botocore_client(SETUPS["virtual-host-https-default-port"], "a", "b", None), BUCKET
    )
    assert default_port.host == f"{BUCKET}.s3.example.com"
    with pytest.raises(ValueError, match="not a presigned URL"):
        BucketEndpoint.from_presigned_url("http://127.0.0.1/b/other?X-Amz-Credential=x")


async def test_expiry_is_capped_at_seven_days(
    botocore_clock: Callable[[dt.datetime], None],
) -> None:
    setup = SETUPS["path-style-localstack"]
    client = botocore_client(setup, ACCESS_KEY, SECRET_KEY, None)
    presigner = await _presigner_for(setup, Credentials(ACCESS_KEY, SECRET_KEY))
    expected = client.generate_presigned_url(
        "get_object",
        Params={
            "Bucket": BUCKET,
            "Key": "k",
            "ResponseContentType": "text/plain",
            "ResponseContentDisposition": "attachment",
        },
        ExpiresIn=MAX_EXPIRES_SECONDS,
    )
    for asked in (MAX_EXPIRES_SECONDS, MAX_EXPIRES_SECONDS + 1, 10 * MAX_EXPIRES_SECONDS):
        got = await presigner.presign_get_object(
            "k",
            expires_in=asked,
            content_type="text/plain",
            content_disposition="attachment",
            now=NOW,
        )
        assert got == expected
    with pytest.raises(ValueError, match="at least one second"):
        await presigner.presign("GET", "k", expires_in=0)
    with pytest.raises(ValueError, match="must not be empty"):
        await presigner.presign("GET", "", expires_in=60)


async def test_signing_key_follows_the_date(
    botocore_clock: Callable[[dt.datetime], None],
) -> None:
    # Two seconds before midnight, then after it: the cached key must not outlive its day.
    setup = SETUPS["virtual-host-custom-port"]
    client = botocore_client(setup, ACCESS_KEY, SECRET_KEY, None)
    presigner = await _presigner_for(setup, Credentials(ACCESS_KEY, SECRET_KEY))
    for instant in (NOW, NOW + dt.timedelta(seconds=3), NOW + dt.timedelta(days=40), NOW):
        botocore_clock(instant)
        expected = _botocore_part(client, setup.bucket, "k", "u", 1, 5)
        got = await presigner.presign_upload_part(
            PartGrant(
                key="k", multipart_upload_id="u", part_number=1, content_length=5, expires_in=600
            ),
            now=instant,
        )
        assert got == expected, instant
    # An aware datetime is the same instant as its naive UTC counterpart.
    paris = dt.timezone(dt.timedelta(hours=2))
    aware = await presigner.presign_upload_part(
        PartGrant(
            key="k", multipart_upload_id="u", part_number=1, content_length=5, expires_in=600
        ),
        now=NOW.replace(tzinfo=dt.UTC).astimezone(paris),
    )
    assert aware == expected


async def test_the_clock_is_read_at_every_url_without_a_fixed_instant() -> None:
    presigner = await _presigner_for(SETUPS["path-style-localstack"], Credentials("a", "b"))
    before = dt.datetime.now(dt.UTC).replace(microsecond=0, tzinfo=None)
    url = await presigner.presign("GET", "k", expires_in=60)
    after = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    stamp = dt.datetime.strptime(parse_qs(urlsplit(url).query)["X-Amz-Date"][0], "%Y%m%dT%H%M%SZ")
    assert before <= stamp <= after


def _expiring_metadata(number: int) -> dict[str, str]:
    # Five minutes left: inside botocore's mandatory refresh window (ten
    # minutes), so every get_frozen_credentials() call refreshes.
    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    return {
        "access_key": f"ASIA{number:04d}",
        "secret_key": f"secret/{number}+",
        "token": f"token-{number}",
        "expiry_time": expiry.isoformat(),
    }


async def _assert_each_url_uses_fresh_credentials(
    presigner: S3Presigner, setup: Setup, first: int
) -> None:
    for number in range(first, first + 3):
        fresh = _expiring_metadata(number)
        client = botocore_client(setup, fresh["access_key"], fresh["secret_key"], fresh["token"])
        expected = _botocore_put(client, setup.bucket, "k", "text/plain", 3, None)
        got = await presigner.presign_put_object(
            PutGrant(
                key="k", content_type="text/plain", content_length=3, sha256=None, expires_in=900
            ),
            now=NOW,
        )
        assert got == expected, number


async def test_refreshable_credentials_are_asked_for_every_url(
    botocore_clock: Callable[[dt.datetime], None],
) -> None:
    refreshed = iter(range(1, 100))
    credentials = RefreshableCredentials.create_from_metadata(
        metadata=_expiring_metadata(0),
        refresh_using=lambda: _expiring_metadata(next(refreshed)),
        method="test-provider",
    )
    setup = SETUPS["path-style-localstack"]
    presigner = await _presigner_for(setup, credentials)
    await _assert_each_url_uses_fresh_credentials(presigner, setup, first=1)


async def test_aiobotocore_refreshable_credentials_are_awaited_for_every_url(
    botocore_clock: Callable[[dt.datetime], None],
) -> None:
    refreshed = iter(range(1, 100))

    async def refresh() -> dict[str, str]:
        return _expiring_metadata(next(refreshed))

    credentials = AioRefreshableCredentials.create_from_metadata(
        metadata=_expiring_metadata(0), refresh_using=refresh, method="test-provider"
    )
    setup = SETUPS["virtual-host-custom-port"]
    presigner = await _presigner_for(setup, credentials)
    await _assert_each_url_uses_fresh_credentials(presigner, setup, first=1)


async def test_credentials_changed_in_one_part_are_not_mixed_with_the_old(
    botocore_clock: Callable[[dt.datetime], None],
) -> None:
    # A new secret alone, a new token alone, a new key id alone: none may
    # reuse what was cached for the credentials before.
    rotations = [
        (ACCESS_KEY, "first-secret", "token-a"),
        (ACCESS_KEY, "new-secret", "token-a"),
        (ACCESS_KEY, "new-secret", "token-b"),
        ("AKIDOTHER", "new-secret", "token-b"),
    ]
    pending = iter(rotations)

    def refresh() -> dict[str, str]:
        access_key, secret, token = next(pending)
        return {
            **_expiring_metadata(0),
            "access_key": access_key,
            "secret_key": secret,
            "token": token,
        }

    setup = SETUPS["path-style-localstack"]
    credentials = RefreshableCredentials.create_from_metadata(
        metadata=_expiring_metadata(0), refresh_using=refresh, method="test-provider"
    )
    presigner = await _presigner_for(setup, credentials)
    for access_key, secret, token in rotations:
        client = botocore_client(setup, access_key, secret, token)
        expected = _botocore_put(client, setup.bucket, "k", "text/plain", 3, None)
        got = await presigner.presign_put_object(
            PutGrant(
                key="k", content_type="text/plain", content_length=3, sha256=None, expires_in=900
            ),
            now=NOW,
        )
        assert got == expected, (access_key, secret, token)


async def test_an_empty_session_token_is_signed_as_botocore_signs_it(
    botocore_clock: Callable[[dt.datetime], None],
) -> None:
    # botocore adds X-Amz-Security-Token whenever the token is not None, empty or not.
    setup = SETUPS["virtual-host-custom-port"]
    client = botocore_client(setup, ACCESS_KEY, SECRET_KEY, "")
    presigner = await _presigner_for(setup, Credentials(ACCESS_KEY, SECRET_KEY, ""))
    got = await presigner.presign_get_object(
        "k", expires_in=3600, content_type="text/plain", content_disposition="inline", now=NOW
    )
    assert got == _botocore_get(client, setup.bucket, "k", "text/plain", "inline")
    assert "&X-Amz-Security-Token=&" in got


async def test_no_credentials_fails_at_signing_as_botocore_does() -> None:
    presigner = await _presigner_for(SETUPS["path-style-localstack"], None)
    with pytest.raises(NoCredentialsError):
        await presigner.presign("GET", "k", expires_in=60)


def _s3_settings(**values: Any) -> Settings:
    return Settings(
        _env_file=None,
        storage_backend="s3",
        s3_bucket=BUCKET,
        s3_region="eu-central-1",
        **values,
    )


async def _botocore_and_storage(storage: S3Storage) -> list[tuple[str, str]]:
    """Three URLs from aiobotocore, with the parameters S3Storage once gave it, and from S3Storage.

    S3Storage signs with its presigner now; its botocore client (kept for
    POST policies) is configured as before, so it is the oracle.
    """
    key = "uploads/alice/ünï code+~//1.txt"
    client = storage._presign_client
    disposition = "attachment; filename*=UTF-8''%C3%BC.txt"
    put_params = {
        "Bucket": BUCKET,
        "Key": key,
        "ContentType": "text/plain",
        "ContentLength": 44,
        "IfNoneMatch": "*",
        "ChecksumSHA256": SHA256,
    }
    get_params = {
        "Bucket": BUCKET,
        "Key": key,
        "ResponseContentType": "text/plain",
        "ResponseContentDisposition": disposition,
    }
    part_params = {
        "Bucket": BUCKET,
        "Key": key,
        "UploadId": "id+/=",
        "PartNumber": 7,
        "ContentLength": 123,
    }
    return [
        (
            await client.generate_presigned_url("put_object", Params=put_params, ExpiresIn=900),
            (
                await storage.presign_put(
                    PutGrant(
                        key=key,
                        content_type="text/plain",
                        content_length=44,
                        sha256=SHA256,
                        expires_in=900,
                    )
                )
            ).url,
        ),
        (
            await client.generate_presigned_url("get_object", Params=get_params, ExpiresIn=3600),
            await storage.presign_get(
                GetGrant(
                    key, expires_in=3600, content_type="text/plain", content_disposition=disposition
                )
            ),
        ),
        (
            await client.generate_presigned_url("upload_part", Params=part_params, ExpiresIn=600),
            (
                await storage.presign_part(
                    PartGrant(
                        key=key,
                        multipart_upload_id="id+/=",
                        part_number=7,
                        content_length=123,
                        expires_in=600,
                    )
                )
            ).url,
        ),
    ]


@pytest.mark.parametrize(
    "values",
    [
        {
            "s3_endpoint_url": "http://s3.internal:9000",
            "s3_public_endpoint_url": "https://files.example.com:8443",
            "s3_addressing_style": "virtual",
        },
        {"s3_endpoint_url": "http://127.0.0.1:4566", "s3_addressing_style": "path"},
        {"s3_addressing_style": "auto"},
    ],
    ids=["public-endpoint-virtual-host", "one-endpoint-path-style", "aws-auto"],
)
async def test_s3storage_signs_what_botocore_signs(
    values: dict[str, Any],
    botocore_clock: Callable[[dt.datetime], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Both clocks at NOW: botocore's (the fixture) and the presigner's.
    stopped = NOW.replace(tzinfo=dt.UTC).timestamp()
    monkeypatch.setattr(time, "time", lambda: stopped)
    settings = _s3_settings(s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY, **values)
    async with open_s3_storage(settings) as storage:
        for expected, got in await _botocore_and_storage(storage):
            assert got == expected


@pytest.fixture
def chain_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Temporary credentials in the environment, and nothing else for the chain to find."""
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "ASIAENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "environment/secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "environment+token/==")


async def test_open_presigner_takes_the_provider_chains_credentials(
    chain_credentials: None,
    botocore_clock: Callable[[dt.datetime], None],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopped = NOW.replace(tzinfo=dt.UTC).timestamp()
    monkeypatch.setattr(time, "time", lambda: stopped)
    settings = _s3_settings(s3_endpoint_url="http://127.0.0.1:4566", s3_addressing_style="path")
    async with open_s3_storage(settings) as storage:
        pairs = await _botocore_and_storage(storage)
    for expected, got in pairs:
        assert got == expected
        query = parse_qs(urlsplit(got).query)
        assert query["X-Amz-Security-Token"] == ["environment+token/=="]
        assert query["X-Amz-Credential"][0].startswith("ASIAENVIRONMENT/")


def test_the_presign_benchmark_imports() -> None:
    importlib.import_module("bench.presign_bench")


# --- against strict LocalStack ------------------------------------------------


@dataclass
class Bucket:
    storage: S3Storage
    presigner: S3Presigner
    http: httpx.AsyncClient


@pytest.fixture
async def live(localstack: LocalStackServer, s3_bucket: str) -> AsyncIterator[Bucket]:
    settings = Settings(
        _env_file=None,
        storage_backend="s3",
        s3_endpoint_url=localstack.endpoint_url,
        s3_bucket=s3_bucket,
        s3_access_key_id="test",
        # LocalStack verifies presigned URLs with the secret "test" only.
        s3_secret_access_key="test",
        s3_addressing_style="path",
    )
    async with open_s3_storage(settings) as storage, httpx.AsyncClient(timeout=30) as http:
        await storage.initialize(cors_origins=[])
        presigner = await open_presigner(settings, session=aioboto3.Session())
        yield Bucket(storage, presigner, http)


# Keys LocalStack must find exactly where the URL says (control characters aside).
LIVE_KEYS = [key for key in KEYS if "\t" not in key]


async def _put(
    bucket: Bucket, key: str, body: bytes, content_type: str
) -> tuple[str, dict[str, str]]:
    sha256 = base64.b64encode(hashlib.sha256(body).digest()).decode()
    url = await bucket.presigner.presign_put_object(
        PutGrant(
            key=key,
            content_type=content_type,
            content_length=len(body),
            sha256=sha256,
            expires_in=300,
        )
    )
    headers = {"Content-Type": content_type, "If-None-Match": "*", "x-amz-checksum-sha256": sha256}
    return url, headers


def _tamper_signature(url: str) -> str:
    head, signature = url.rsplit("&X-Amz-Signature=", 1)
    flipped = ("0" if signature[0] != "0" else "1") + signature[1:]
    return f"{head}&X-Amz-Signature={flipped}"


async def test_localstack_accepts_put_and_get_for_every_key(live: Bucket) -> None:
    for number, key in enumerate(LIVE_KEYS):
        body = f"object {number}: {key}".encode()
        url, headers = await _put(live, key, body, "text/plain")
        put = await live.http.put(url, content=body, headers=headers)
        assert put.status_code == 200, (key, put.text)
        info = await live.storage.head(key)
        assert info is not None, key  # stored under this very key, not a re-encoded one
        assert info.size == len(body)
        disposition = f"attachment; filename*=UTF-8''{quote(key[-20:], safe='')}"
        get_url = await live.presigner.presign_get_object(
            key, expires_in=300, content_type="application/x-test", content_disposition=disposition
        )
        get = await live.http.get(get_url)
        assert get.status_code == 200, (key, get.text)
        assert get.content == body
        assert get.headers["content-type"] == "application/x-test"
        assert get.headers["content-disposition"] == disposition


async def test_localstack_refuses_a_changed_signature(live: Bucket) -> None:
    body = b"signed bytes"
    url, headers = await _put(live, "tamper/signature.txt", body, "text/plain")
    refused = await live.http.put(_tamper_signature(url), content=body, headers=headers)
    assert refused.status_code == 403, refused.text
    assert await live.storage.head("tamper/signature.txt") is None
    assert (await live.http.put(url, content=body, headers=headers)).status_code == 200
    get_url = await live.presigner.presign_get_object(
        "tamper/signature.txt", expires_in=300, content_type="text/plain", content_disposition="x"
    )
    assert (await live.http.get(_tamper_signature(get_url))).status_code == 403
    assert (await live.http.get(get_url)).status_code == 200


async def test_localstack_refuses_a_changed_key(live: Bucket) -> None:
    body = b"signed bytes"
    url, headers = await _put(live, "tamper/key.txt", body, "text/plain")
    other = url.replace("/tamper/key.txt?", "/tamper/key.txtx?", 1)
    assert other != url
    refused = await live.http.put(other, content=body, headers=headers)
    assert refused.status_code == 403, refused.text
    assert await live.storage.head("tamper/key.txtx") is None


async def test_localstack_refuses_a_changed_signed_header(live: Bucket) -> None:
    body = b"signed bytes"
    url, headers = await _put(live, "tamper/header.txt", body, "text/plain")
    other_type = await live.http.put(
        url, content=body, headers={**headers, "Content-Type": "text/html"}
    )
    assert other_type.status_code == 403, other_type.text
    other_length = await live.http.put(url, content=body + b"!", headers=headers)
    assert other_length.status_code == 403, other_length.text
    no_checksum = {k: v for k, v in headers.items() if k != "x-amz-checksum-sha256"}
    dropped = await live.http.put(url, content=body, headers=no_checksum)
    assert dropped.status_code == 403, dropped.text
    assert await live.storage.head("tamper/header.txt") is None
    # A changed response override is a changed signed query parameter.
    assert (await live.http.put(url, content=body, headers=headers)).status_code == 200
    get_url = await live.presigner.presign_get_object(
        "tamper/header.txt", expires_in=300, content_type="text/plain", content_disposition="x"
    )
    changed = get_url.replace("content-type=text%2Fplain", "content-type=text%2Fhtml", 1)
    assert changed != get_url
    assert (await live.http.get(changed)).status_code == 403


async def test_localstack_accepts_a_presigned_part_of_the_signed_size(live: Bucket) -> None:
    key = "parts/ünï code+~//upload.bin"
    upload_id = await live.storage.start_multipart(key, content_type="application/octet-stream")
    body = b"the only part, so it may be small"
    url = await live.presigner.presign_upload_part(
        PartGrant(
            key=key,
            multipart_upload_id=upload_id,
            part_number=1,
            content_length=len(body),
            expires_in=300,
        )
    )
    wrong_size = await live.http.put(url, content=body + b"!")
    assert wrong_size.status_code == 403, wrong_size.text
    tampered = await live.http.put(_tamper_signature(url), content=body)
    assert tampered.status_code == 403, tampered.text
    put = await live.http.put(url, content=body)
    assert put.status_code == 200, put.text
    await live.storage.complete_multipart(
        key, multipart_upload_id=upload_id, parts=[(1, put.headers["etag"])]
    )
    info = await live.storage.head(key)
    assert info is not None
    assert info.size == len(body)
