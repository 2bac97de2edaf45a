"""JWTs built by hand, for the tests of what the verifier refuses and accepts."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from jose import jwt


def claims(**changes: Any) -> dict[str, Any]:
    """Valid claims for "alice" (a day to live), changed; a change to None removes a claim.

    A day, not minutes: parametrized cases are built when the suite is
    collected, and a slow run reaches them long after.
    """
    values: dict[str, Any] = {"sub": "alice", "exp": int(time.time()) + 86400}
    values.update(changes)
    return {name: value for name, value in values.items() if value is not None}


def b64url(data: bytes | dict[str, Any] | list[Any]) -> str:
    """Unpadded base64url of bytes, or of a JSON document."""
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hand_built(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWT from its parts, signed by nothing (or by ``signature``)."""
    return f"{b64url(header)}.{b64url(payload)}.{b64url(signature) if signature else ''}"


def hs256(secret: str, **changes: Any) -> str:
    """An HS256 token of ``claims(**changes)``."""
    token: str = jwt.encode(claims(**changes), secret, algorithm="HS256")
    return token


def bearer(token: str) -> dict[str, str]:
    """The Authorization header that carries ``token``."""
    return {"Authorization": f"Bearer {token}"}
