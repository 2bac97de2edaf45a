"""Presigned S3 URLs (SigV4 query authentication) without botocore's per-call machinery.

botocore's ``generate_presigned_url`` rebuilds a request for every URL:
parameter validation, the serializer, the endpoint rule set, the event
hooks, two URL re-parses. That is about a millisecond per URL, against a few
microseconds for the hashing and the one HMAC that the signature needs once
the day's signing key is known. :class:`S3Presigner` does only the latter:

- where the bucket lives (URL prefix, ``Host``, signing region) is asked of
  botocore once, at start-up (:func:`resolve_bucket_endpoint`), so path and
  virtual-host addressing, custom endpoints and AWS's own endpoints come out
  as botocore would address them;
- the signing key is derived once per (date, credentials) and kept;
- credentials are asked of botocore's provider chain for every URL
  (``get_frozen_credentials()``), so refreshed credentials are used as soon
  as botocore has them.

The URLs are those botocore makes, byte for byte (``tests/test_s3_presign.py``
holds the two side by side): keys encoded as botocore encodes a greedy
``{Key+}`` label, query parameters in the order given and then the
authentication parameters, the same headers signed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import inspect
import time
from collections.abc import Awaitable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from aiobotocore.config import AioConfig
from botocore.credentials import Credentials
from botocore.exceptions import NoCredentialsError

from uploadsvc.config import Settings
from uploadsvc.storage.base import PartGrant, PutGrant

# SigV4 query signatures are valid for at most seven days.
MAX_EXPIRES_SECONDS = 604_800
# The key of the one URL that start-up asks botocore for (see resolve_bucket_endpoint).
PROBE_KEY = "uploadsvc-endpoint-probe"

_ALGORITHM = "AWS4-HMAC-SHA256"
_TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
# A presigned URL cannot know its body.
_UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
# Headers botocore leaves out of a signature (botocore.auth.SIGNED_HEADERS_BLACKLIST).
_UNSIGNED_HEADERS = frozenset({"expect", "transfer-encoding", "user-agent", "x-amzn-trace-id"})
# botocore drops this Content-Type before signing a URL, taking it for the
# default it sets on form-encoded requests; kept so the URLs stay the same.
_DROPPED_CONTENT_TYPE = "application/x-www-form-urlencoded; charset=utf-8"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# The greatest name among the authentication parameters: the canonical query
# sorts them, and operation parameters that sort after them all (lower case
# ones do) let the sorted authentication part be reused.
_LAST_AUTH_NAME = "X-Amz-SignedHeaders"
# Distinct signed-header sets whose encoding is kept (the service uses four).
_MAX_CACHED_HEADER_SETS = 64


class FrozenCredentials(Protocol):
    """A consistent snapshot of credentials (botocore's ``ReadOnlyCredentials``)."""

    @property
    def access_key(self) -> str: ...

    @property
    def secret_key(self) -> str: ...

    @property
    def token(self) -> str | None: ...


class CredentialSource(Protocol):
    """botocore's (or aiobotocore's, whose method is a coroutine) credentials object."""

    def get_frozen_credentials(self) -> FrozenCredentials | Awaitable[FrozenCredentials]: ...


@dataclass(frozen=True, slots=True)
class BucketEndpoint:
    """Where one bucket's objects are, and the scope their signatures carry."""

    # Everything before "/{key}": "http://127.0.0.1:4566/uploads" (path style)
    # or "https://uploads.s3.amazonaws.com" (virtual-host style).
    base_url: str
    # The Host header, as botocore signs it: lower case, no default port.
    host: str
    region: str
    service: str = "s3"

    @property
    def base_path(self) -> str:
        return urlsplit(self.base_url).path

    @classmethod
    def from_presigned_url(cls, url: str, *, key: str = PROBE_KEY) -> BucketEndpoint:
        """Read the endpoint off a URL that botocore presigned for ``key`` in the bucket."""
        parts = urlsplit(url)
        suffix = "/" + _encode_key(key)
        if not parts.path.endswith(suffix) or not parts.hostname:
            raise ValueError(f"not a presigned URL for the key {key!r}: {url}")
        credential = parse_qs(parts.query).get("X-Amz-Credential", [""])[0]
        scope = credential.rsplit("/", 4)
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise ValueError(f"not a SigV4 presigned URL: {url}")
        base_path = parts.path[: -len(suffix)]
        return cls(
            base_url=f"{parts.scheme}://{parts.netloc}{base_path}",
            host=_host_header(parts.scheme, parts.hostname, parts.port),
            region=scope[2],
            service=scope[3],
        )


@dataclass(frozen=True, slots=True)
class _Scope:
    """What one day's signatures with one set of credentials share."""

    access_key: str
    secret_key: str
    raw_token: str | None
    date: str
    signing_key: bytes
    credential_scope: str  # date/region/service/aws4_request
    credential: str  # X-Amz-Credential, percent-encoded
    token: str | None  # X-Amz-Security-Token, percent-encoded

    @classmethod
    def derive(cls, credentials: FrozenCredentials, date: str, endpoint: BucketEndpoint) -> _Scope:
        key = hmac.digest(f"AWS4{credentials.secret_key}".encode(), date.encode(), "sha256")
        for part in (endpoint.region, endpoint.service, "aws4_request"):
            key = hmac.digest(key, part.encode(), "sha256")
        credential_scope = f"{date}/{endpoint.region}/{endpoint.service}/aws4_request"
        token = credentials.token
        return cls(
            access_key=credentials.access_key,
            secret_key=credentials.secret_key,
            raw_token=token,
            date=date,
            signing_key=key,
            credential_scope=credential_scope,
            credential=_encode(f"{credentials.access_key}/{credential_scope}"),
            # botocore adds the parameter whenever the token is not None.
            token=None if token is None else _encode(token),
        )


@dataclass(frozen=True, slots=True)
class _AuthParts:
    """The X-Amz-* parameters of one second, expiry and signed-header set."""

    scope: _Scope  # the credentials and day they are for (compared by identity)
    pairs: tuple[tuple[str, str], ...]
    canonical: str  # sorted, as the canonical query string has them
    url: str  # in botocore's order, as the URL has them
    sign_prefix: str  # the string to sign up to the canonical request's hash


class S3Presigner:
    """Presigns requests on the objects of one bucket.

    Safe to share between tasks and threads: the only state is caches whose
    entries are replaced whole.
    """

    def __init__(self, endpoint: BucketEndpoint, credentials: CredentialSource | None) -> None:
        self._endpoint = endpoint
        # None when botocore found no credentials: its clients start without
        # them too, and fail at the first request; so does this.
        self._credentials = credentials
        self._base_path = endpoint.base_path
        # The last day's signing key (with the credentials it is for) and the
        # last second's timestamp: each replaced whole, so sharing is safe.
        self._scope: _Scope | None = None
        self._stamp: tuple[int, str] = (-1, "")
        self._encoded_names: dict[str, str] = {}
        # This second's authentication parameters per (expiry, signed headers).
        self._auth: tuple[str, dict[tuple[int, str], _AuthParts]] = ("", {})

    @property
    def endpoint(self) -> BucketEndpoint:
        return self._endpoint

    async def presign_put_object(self, grant: PutGrant, *, now: dt.datetime | None = None) -> str:
        """A PutObject URL that S3 honours only for the granted bytes, and only once.

        The grant's client headers and Content-Length are signed: the client
        must send them as given.
        """
        headers = {**grant.client_headers(), "Content-Length": str(grant.content_length)}
        return await self.presign(
            "PUT", grant.key, headers=headers, expires_in=grant.expires_in, now=now
        )

    async def presign_get_object(
        self,
        key: str,
        *,
        expires_in: int,
        content_type: str | None = None,
        content_disposition: str | None = None,
        now: dt.datetime | None = None,
    ) -> str:
        """A GetObject URL whose response carries these Content-Type and Content-Disposition
        (the object's own where one is None)."""
        query = tuple(
            (name, value)
            for name, value in (
                ("response-content-type", content_type),
                ("response-content-disposition", content_disposition),
            )
            if value is not None
        )
        return await self.presign("GET", key, query=query, expires_in=expires_in, now=now)

    async def presign_upload_part(self, grant: PartGrant, *, now: dt.datetime | None = None) -> str:
        """An UploadPart URL; with ``content_length``, S3 refuses a part of any other size."""
        query = (("uploadId", grant.multipart_upload_id), ("partNumber", str(grant.part_number)))
        length = grant.content_length
        headers = {} if length is None else {"Content-Length": str(length)}
        return await self.presign(
            "PUT", grant.key, query=query, headers=headers, expires_in=grant.expires_in, now=now
        )

    async def presign(
        self,
        method: str,
        key: str,
        *,
        expires_in: int,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        now: dt.datetime | None = None,
    ) -> str:
        """A URL for ``method`` on ``key``: ``query`` goes into the URL, ``headers`` are signed.

        ``expires_in`` is capped at seven days, the longest S3 accepts.
        ``now`` (UTC when naive) is for tests; the default is the clock.
        """
        credentials = await self._frozen_credentials()
        return self.sign(
            method,
            key,
            credentials=credentials,
            expires_in=expires_in,
            query=query,
            headers=headers,
            now=now,
        )

    def sign(
        self,
        method: str,
        key: str,
        *,
        credentials: FrozenCredentials,
        expires_in: int,
        query: Iterable[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        now: dt.datetime | None = None,
    ) -> str:
        """:meth:`presign` with credentials already frozen (no await)."""
        if not key:
            raise ValueError("an object key must not be empty")
        if expires_in < 1:
            raise ValueError("a presigned URL must be valid for at least one second")
        expires = min(int(expires_in), MAX_EXPIRES_SECONDS)
        amz_date = self._timestamp(now)
        scope = self._scope_for(credentials, amz_date[:8])

        signed = {"host": self._endpoint.host}
        if headers:
            for name, value in headers.items():
                lname = name.lower()
                if lname in _UNSIGNED_HEADERS or (
                    lname == "content-type" and value == _DROPPED_CONTENT_TYPE
                ):
                    continue
                # SigV4's Trimall: no outer blanks, inner runs of blanks as one space.
                signed[lname] = " ".join(value.split())
        names = sorted(signed)
        signed_headers = ";".join(names)
        encoded_names = self._encoded_names.get(signed_headers)
        if encoded_names is None:
            if len(self._encoded_names) >= _MAX_CACHED_HEADER_SETS:
                self._encoded_names.clear()
            encoded_names = self._encoded_names[signed_headers] = _encode(signed_headers)

        # The operation's parameters in the order given, then authentication's:
        # botocore's order, which the URL keeps (the signature sorts them).
        pairs = [(_encode(name), _encode(value)) for name, value in query]
        auth = self._auth_parts(scope, amz_date, expires, signed_headers, encoded_names)
        if all(name > _LAST_AUTH_NAME for name, _ in pairs):
            # Every operation parameter sorts after the authentication ones (the
            # service's all do: lower case): the sorted part made once is reused.
            canonical_query = "&".join(
                [auth.canonical, *[f"{name}={value}" for name, value in sorted(pairs)]]
            )
        else:
            canonical_query = "&".join(
                [f"{name}={value}" for name, value in sorted([*pairs, *auth.pairs])]
            )
        encoded_key = _encode_key(key)
        canonical_request = "\n".join(
            (
                method,
                f"{self._base_path}/{encoded_key}",
                canonical_query,
                "".join([f"{name}:{signed[name]}\n" for name in names]),
                signed_headers,
                _UNSIGNED_PAYLOAD,
            )
        )
        string_to_sign = auth.sign_prefix + hashlib.sha256(canonical_request.encode()).hexdigest()
        signature = hmac.digest(scope.signing_key, string_to_sign.encode(), "sha256").hex()
        query_string = "&".join([*[f"{name}={value}" for name, value in pairs], auth.url])
        return f"{self._endpoint.base_url}/{encoded_key}?{query_string}&X-Amz-Signature={signature}"

    def _auth_parts(
        self, scope: _Scope, amz_date: str, expires: int, signed_headers: str, encoded_names: str
    ) -> _AuthParts:
        """The authentication parameters of this second, expiry and header set, encoded once."""
        date, entries = self._auth
        if date != amz_date:
            entries = {}
            self._auth = (amz_date, entries)  # replaced whole, with its date
        parts = entries.get((expires, signed_headers))
        if parts is not None and parts.scope is scope:
            return parts
        auth = [
            ("X-Amz-Algorithm", _ALGORITHM),
            ("X-Amz-Credential", scope.credential),
            ("X-Amz-Date", amz_date),
            ("X-Amz-Expires", str(expires)),
            ("X-Amz-SignedHeaders", encoded_names),
        ]
        if scope.token is not None:
            auth.append(("X-Amz-Security-Token", scope.token))
        parts = _AuthParts(
            scope=scope,
            pairs=tuple(auth),
            canonical="&".join([f"{name}={value}" for name, value in sorted(auth)]),
            url="&".join([f"{name}={value}" for name, value in auth]),
            sign_prefix=f"{_ALGORITHM}\n{amz_date}\n{scope.credential_scope}\n",
        )
        if len(entries) >= _MAX_CACHED_HEADER_SETS:
            entries.clear()
        entries[(expires, signed_headers)] = parts
        return parts

    async def _frozen_credentials(self) -> FrozenCredentials:
        if self._credentials is None:
            raise NoCredentialsError()
        frozen = self._credentials.get_frozen_credentials()
        if inspect.isawaitable(frozen):
            awaited: FrozenCredentials = await frozen
            return awaited
        return frozen

    def _scope_for(self, credentials: FrozenCredentials, date: str) -> _Scope:
        scope = self._scope
        if (
            scope is not None
            and scope.date == date
            and scope.access_key == credentials.access_key
            and scope.secret_key == credentials.secret_key
            and scope.raw_token == credentials.token
        ):
            return scope
        scope = _Scope.derive(credentials, date, self._endpoint)
        self._scope = scope
        return scope

    def _timestamp(self, now: dt.datetime | None) -> str:
        if now is not None:
            if now.tzinfo is not None:
                now = now.astimezone(dt.UTC)
            return now.strftime(_TIMESTAMP_FORMAT)
        # botocore truncates the clock to the second, as this does.
        second = int(time.time())
        cached_second, stamp = self._stamp
        if cached_second != second:
            stamp = time.strftime(_TIMESTAMP_FORMAT, time.gmtime(second))
            self._stamp = (second, stamp)
        return stamp


def _encode(value: str) -> str:
    # botocore.utils.percent_encode: UTF-8, everything but A-Z a-z 0-9 - . _ ~ escaped.
    return quote(value.encode(), safe="-._~")


def _encode_key(key: str) -> str:
    # How botocore's REST serializer fills the greedy {Key+} label: "/" stays,
    # so "a//b" keeps its empty segment and S3 reads the key back unchanged.
    return quote(key.encode(), safe="/~")


def _host_header(scheme: str, hostname: str, port: int | None) -> str:
    # botocore.auth._host_from_url: lower case, IPv6 in brackets, default port left out.
    host = f"[{hostname}]" if ":" in hostname else hostname
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        host = f"{host}:{port}"
    return host


async def resolve_bucket_endpoint(client: Any, bucket: str) -> BucketEndpoint:
    """Ask a botocore or aiobotocore S3 client, once, how it addresses ``bucket``."""
    url = client.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": PROBE_KEY}, ExpiresIn=60
    )
    if inspect.isawaitable(url):
        url = await url
    return BucketEndpoint.from_presigned_url(str(url), key=PROBE_KEY)


async def open_presigner(
    settings: Settings, *, session: Any, config: AioConfig | None = None
) -> S3Presigner:
    """The presigner for ``settings``'s bucket at its browser-facing endpoint.

    ``session`` is the ``aioboto3.Session`` that S3Storage's clients come
    from, and ``config`` their client config (one with just the addressing
    style is made when it is left out). The endpoint is resolved with a
    short-lived client that holds placeholder keys, so no credential is
    looked up, and nothing goes over the network, to resolve it. The
    credentials are those S3Storage's clients use: the configured keys, or
    else the session's provider chain (environment, profile, IMDS, ...),
    whose refreshable object is asked again for every URL.
    """
    if config is None:
        config = AioConfig(
            signature_version="s3v4", s3={"addressing_style": settings.s3_addressing_style}
        )
    async with session.client(
        "s3",
        endpoint_url=settings.s3_public_endpoint_url or settings.s3_endpoint_url,
        region_name=settings.s3_region,
        aws_access_key_id="endpoint-probe",
        aws_secret_access_key="endpoint-probe",  # noqa: S106 - never sent, only signs the probe
        config=config,
    ) as probe:
        endpoint = await resolve_bucket_endpoint(probe, settings.s3_bucket)
    secret = settings.s3_secret_access_key
    credentials: CredentialSource | None
    if settings.s3_access_key_id is not None and secret:
        credentials = Credentials(settings.s3_access_key_id, secret.get_secret_value())
    else:
        credentials = await session.get_credentials()
    return S3Presigner(endpoint, credentials)
