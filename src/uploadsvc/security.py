"""Bearer-token authentication (SPEC §2). The only module that imports jose.

Tokens are JWTs whose ``sub`` is the user id. Two ways to trust them:

- HS256 with a shared secret (``JWT_SECRET``; a default in development, so
  ``uploadsvc token`` and ``make dev`` work with no configuration);
- RS256/ES256 with the public keys of an identity provider (``JWT_JWKS_URL``),
  fetched asynchronously, cached, and refreshed at most once a minute.

Each key type verifies exactly one algorithm (an RSA key only RS256, a P-256
key only ES256, the secret only HS256), so ``alg: none`` and the classic
"HS256 signed with the RSA public key" confusion are refused before any
signature is checked. Every failure is a 401 with a stable ``code``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

from uploadsvc.config import Settings
from uploadsvc.errors import Unauthorized

# JWKS key type → the one algorithm it may verify.
_ALGORITHM_FOR_KEY_TYPE = {"RSA": "RS256", "EC": "ES256"}
_JWKS_ALGORITHMS = frozenset(_ALGORITHM_FOR_KEY_TYPE.values())
_JWKS_REFRESH_SECONDS = 60.0
_JWKS_TIMEOUT_SECONDS = 5.0
_ADMIN_ROLE = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's ``sub``, and whether it holds the admin role."""

    user_id: str
    is_admin: bool = False


def extract_bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <t>`` (or ``JWT <t>``, as Open Event clients send)."""
    if not authorization:
        raise Unauthorized(
            "An Authorization: Bearer <token> header is required.", code="missing_token"
        )
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() not in ("bearer", "jwt") or not token or " " in token:
        raise Unauthorized(
            "The Authorization header must be 'Bearer <token>'.", code="invalid_token"
        )
    return token


def _is_admin(claims: dict[str, Any]) -> bool:
    # `roles` is a list (or a string); `scope` is space-separated (OAuth 2).
    roles = claims.get("roles", [])
    if isinstance(roles, str):
        roles = roles.split()
    scope = claims.get("scope", "")
    scopes = scope.split() if isinstance(scope, str) else list(scope or [])
    return _ADMIN_ROLE in (roles if isinstance(roles, list) else []) or _ADMIN_ROLE in scopes


class TokenVerifier:
    """Verifies tokens; one per process (made in the lifespan)."""

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._secret = settings.effective_jwt_secret
        self._jwks_url = settings.jwt_jwks_url
        self._owns_client = http_client is None
        self._client = http_client
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._refresh_lock = asyncio.Lock()

    async def aclose(self) -> None:
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except (JOSEError, ValueError, TypeError, KeyError):
            raise Unauthorized("The token is malformed.", code="invalid_token") from None
        algorithm = header.get("alg")
        if algorithm == "HS256" and self._secret is not None:
            key: Any = self._secret
        elif algorithm in _JWKS_ALGORITHMS and self._jwks_url is not None:
            key = await self._jwks_key(header.get("kid"), str(algorithm))
        else:
            raise Unauthorized(
                f"Tokens signed with {algorithm!r} are not accepted.", code="unsupported_algorithm"
            )
        claims = self._decode(token, key, str(algorithm))
        if not isinstance(claims.get("exp"), int | float):
            raise Unauthorized("The token has no 'exp' claim.", code="invalid_claims")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("The token has no 'sub' claim.", code="invalid_claims")
        return Principal(user_id=subject, is_admin=_is_admin(claims))

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        settings = self._settings
        options = {
            # `exp` and `sub` are required, but checked below rather than by jose,
            # so that their absence is reported as a claims problem.
            "verify_aud": settings.jwt_audience is not None,
            "verify_iss": settings.jwt_issuer is not None,
            "leeway": settings.jwt_leeway_seconds,
        }
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                options=options,
            )
        except ExpiredSignatureError:
            raise Unauthorized("The token has expired.", code="token_expired") from None
        except JWTClaimsError as exc:
            raise Unauthorized(
                f"The token's claims are not valid: {exc}", code="invalid_claims"
            ) from None
        except (JOSEError, ValueError, TypeError, KeyError, AttributeError):
            raise Unauthorized(
                "The token's signature is not valid.", code="invalid_token"
            ) from None
        return claims

    async def _jwks_key(self, kid: object, algorithm: str) -> Any:
        """The JWKS key for ``kid`` that may verify ``algorithm``; refreshes on an unknown kid."""
        key = self._find_key(kid, algorithm)
        if key is None and self._may_refresh():
            await self._refresh()
            key = self._find_key(kid, algorithm)
        if key is None:
            if self._fetched_at is None:
                raise Unauthorized(
                    "The identity provider's keys could not be fetched.", code="jwks_unavailable"
                )
            raise Unauthorized("The token's key is not known.", code="invalid_token")
        try:
            return jwk.construct(key, algorithm)
        except (JOSEError, ValueError, TypeError, KeyError):
            raise Unauthorized("The token's key is not usable.", code="invalid_token") from None

    def _find_key(self, kid: object, algorithm: str) -> dict[str, Any] | None:
        fitting = [
            key
            for key in self._keys.values()
            if _ALGORITHM_FOR_KEY_TYPE.get(str(key.get("kty"))) == algorithm
            and key.get("alg", algorithm) == algorithm
        ]
        if kid is None:
            return fitting[0] if len(fitting) == 1 else None
        return next((key for key in fitting if key.get("kid") == kid), None)

    def _may_refresh(self) -> bool:
        # Failed fetches count too: an unknown kid or a down IdP must not
        # turn every request into a request to the IdP.
        last = self._attempted_at
        return last is None or time.monotonic() - last >= _JWKS_REFRESH_SECONDS

    async def _refresh(self) -> None:
        async with self._refresh_lock:
            # Another request may have refreshed while this one waited.
            if not self._may_refresh():
                return
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=_JWKS_TIMEOUT_SECONDS)
            assert self._jwks_url is not None
            self._attempted_at = time.monotonic()
            try:
                response = await self._client.get(self._jwks_url)
                response.raise_for_status()
                keys = response.json()["keys"]
                self._keys = {
                    str(key.get("kid", index)): key
                    for index, key in enumerate(keys)
                    if isinstance(key, dict)
                }
                self._fetched_at = time.monotonic()
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                pass  # keep the keys we had; retry after the refresh interval


def mint_token(
    settings: Settings, *, sub: str, admin: bool = False, ttl_seconds: int = 86400
) -> str:
    """An HS256 token the configured secret accepts (development and tests)."""
    secret = settings.effective_jwt_secret
    if secret is None:
        raise RuntimeError("no JWT secret is configured; tokens come from the identity provider")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + ttl_seconds}
    if admin:
        claims["roles"] = [_ADMIN_ROLE]
    if settings.jwt_audience is not None:
        claims["aud"] = settings.jwt_audience
    if settings.jwt_issuer is not None:
        claims["iss"] = settings.jwt_issuer
    token: str = jwt.encode(claims, secret, algorithm="HS256")
    return token
