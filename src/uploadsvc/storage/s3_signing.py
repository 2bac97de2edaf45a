"""Signing a streamed part with the hash its sender already computed.

botocore hashes a request's body for the SigV4 signature on the event loop
(over plain HTTP always; over HTTPS too unless the request carries a
checksum), which blocks the loop for milliseconds per part of
``S3Storage.put_stream``. So each part is hashed once, in a worker thread
(hashlib releases the GIL), and the signer registered here signs that hash
instead of hashing the bytes again. Everything else, the signature
included, is what botocore's ``s3v4`` does.
"""

from __future__ import annotations

from typing import Any

import botocore.auth
from botocore.awsrequest import AWSRequest


class PrehashedBody:
    """A request body that carries the SHA-256 (hex) of its bytes, computed off the loop."""

    def __init__(self, sha256_hex: str) -> None:
        self.sha256_hex = sha256_hex


class _PrehashedS3SigV4Auth(botocore.auth.S3SigV4Auth):  # type: ignore[misc]
    """S3's SigV4 signer that takes a :class:`PrehashedBody`'s payload hash from the body."""

    def payload(self, request: AWSRequest) -> str:
        body = request.body
        if (
            isinstance(body, PrehashedBody)
            and not self._is_streaming_checksum_payload(request)
            and self._should_sha256_sign_payload(request)
        ):
            return body.sha256_hex
        payload: str = super().payload(request)
        return payload


# botocore looks signers up by name in this table; the name is ours alone.
_PREHASHED_SIGNER = "s3v4-uploadsvc-prehashed"
botocore.auth.AUTH_TYPE_MAPS.setdefault(_PREHASHED_SIGNER, _PrehashedS3SigV4Auth)


def sign_parts_with_their_hash(client: Any) -> None:
    """Make ``client`` sign the requests that may carry a :class:`PrehashedBody` with its hash."""
    for operation in ("PutObject", "UploadPart"):
        client.meta.events.register_first(
            f"choose-signer.s3.{operation}",
            _choose_prehashed_signer,
            unique_id=f"uploadsvc-prehashed-{operation}",
        )


def _choose_prehashed_signer(signature_version: str, **kwargs: Any) -> str | None:
    # Only where botocore would sign a request with plain "s3v4": presigned
    # URLs ("s3v4-query") and other schemes keep botocore's own choice.
    return _PREHASHED_SIGNER if signature_version == "s3v4" else None
