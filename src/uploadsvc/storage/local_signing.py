"""The local backend's signed URLs: what one signs, how it is signed and checked.

A URL is ``{public base}/v1/storage/{key}?{query}``. The query holds what the
request must match (the method, an expiry, the Content-Type, Content-Length
or a size cap, the SHA-256, ``If-None-Match``, a multipart upload's id and
part number, a download's response headers) and an HMAC-SHA256, keyed with
the signing secret, over the method, the key and every other parameter: as
with an S3 presigned URL, the query string is the authorisation. The backend
(``local.py``) signs; ``local_server.py`` verifies, then checks the request
against what was signed.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from urllib.parse import quote, urlencode

from uploadsvc.errors import Forbidden

# Where the app serves these URLs (see routers/local_storage.py).
ROUTE_PREFIX = "/v1/storage"


class Param:
    """The query parameters of a signed URL, each signed with the rest."""

    # What a request to the URL must match.
    CONTENT_TYPE = "X-Content-Type"
    CONTENT_LENGTH = "X-Content-Length"
    MAX_LENGTH = "X-Max-Length"
    MULTIPART_UPLOAD_ID = "X-Upload-Id"
    PART_NUMBER = "X-Part-Number"
    SHA256 = "X-Checksum-Sha256"
    IF_NONE_MATCH = "X-If-None-Match"
    # The headers a download answers with.
    RESPONSE_TYPE = "response-content-type"
    RESPONSE_DISPOSITION = "response-content-disposition"


_SIGNATURE = "X-Signature"
_EXPIRES = "X-Expires"
_METHOD = "X-Method"


class UrlSigner:
    """Signs the local backend's URLs with one secret, and verifies them."""

    def __init__(self, *, secret: str, public_base_url: str) -> None:
        self._secret = secret.encode()
        self._base_url = public_base_url.rstrip("/") + ROUTE_PREFIX

    def sign(self, method: str, key: str, params: Mapping[str, str], expires_in: int) -> str:
        """A URL for one ``method`` on ``key`` that carries ``params``, valid ``expires_in`` s."""
        signed = {**params, _METHOD: method, _EXPIRES: str(int(time.time()) + expires_in)}
        signed[_SIGNATURE] = self._signature(method, key, signed)
        return f"{self._base_url}/{quote(key)}?{urlencode(signed)}"

    def verify(self, method: str, key: str, query: Mapping[str, str]) -> None:
        """Refuse a request whose URL was not signed by us for this method and key."""
        # As bytes: compare_digest refuses str with non-ASCII characters
        # (a TypeError), and a query string may hold any.
        given = query.get(_SIGNATURE, "").encode("utf-8", "surrogateescape")
        expected = self._signature(method, key, query).encode()
        if query.get(_METHOD) != method or not hmac.compare_digest(given, expected):
            raise Forbidden(
                "The request signature does not match this URL.", code="signature_mismatch"
            )
        try:
            expires = int(query.get(_EXPIRES, ""))
        except ValueError:
            raise Forbidden("The URL has no valid expiry.", code="signature_mismatch") from None
        if time.time() > expires:
            raise Forbidden("The URL has expired.", code="url_expired")

    def _signature(self, method: str, key: str, params: Mapping[str, str]) -> str:
        canonical = "\n".join(
            [method, key, urlencode(sorted((k, v) for k, v in params.items() if k != _SIGNATURE))]
        )
        return hmac.new(self._secret, canonical.encode(), hashlib.sha256).hexdigest()
