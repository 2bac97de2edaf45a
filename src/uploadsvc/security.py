"""Bearer-token authentication (docs/api.md, "Authentication"). The only module that imports jose.

Tokens are JWTs whose ``sub`` is the user id. Two ways to trust them:

- HS256 with a shared secret (``JWT_SECRET``; a default in development, so
  ``uploadsvc token`` and ``make dev`` work with no configuration);
- RS256/ES256 with the public keys of an identity provider (``JWT_JWKS_URL``),
  fetched with an async client (never blocking the event loop), cached, and
  refreshed at most once a minute.

Each key verifies exactly one algorithm: an RSA JWK only RS256, a P-256 JWK
only ES256, the shared secret only HS256. The algorithm named in the token
header therefore only selects *which* key may be tried, never *how* a key is
used, so ``alg: none`` and the classic "HS256 signed with the RSA public key"
confusion are refused. Header fields that point at keys (``jku``, ``x5u``,
``jwk``) are ignored: keys come only from configuration.

Every failure is an :class:`Unauthorized` (401) with a stable ``code``:

``missing_token``         no Authorization header
``invalid_token``         malformed header or token, bad signature, unknown key
``unsupported_algorithm`` ``alg`` is not one this configuration accepts
``token_expired``         ``exp`` is in the past (beyond the leeway)
``invalid_claims``        ``exp``/``sub`` missing or unusable, wrong ``aud``/``iss``…
``jwks_unavailable``      the identity provider's keys could not be fetched yet

An unreachable identity provider is reported as 401, not 503: the client
cannot be authenticated, and nothing about the request is retryable by it
except after the keys are back.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import httpx
from jose import jwk, jwt
from jose.exceptions import ExpiredSignatureError, JOSEError, JWTClaimsError

from uploadsvc.config import Settings
from uploadsvc.errors import Unauthorized

logger = logging.getLogger(__name__)

_HS256 = "HS256"
_JWKS_ALGORITHMS = frozenset({"RS256", "ES256"})
# Unknown kids refetch the JWKS at most this often, failed fetches included:
# a flood of forged kids, or a down IdP, must not become a flood of fetches.
_JWKS_REFRESH_SECONDS = 60.0
# Known keys are refetched after this long, so that a key the IdP withdrew
# stops being trusted even when no token names an unknown kid.
_JWKS_MAX_AGE_SECONDS = 600.0
_JWKS_TIMEOUT_SECONDS = 5.0
_ADMIN_ROLE = "admin"
# Verified tokens are remembered (LRU): a client sends the same token on every
# call, and a request with a body has it checked twice (body_guard.py, then the
# route). An entry is used only while the token's own `exp` allows, and at most
# this long, so that a key the IdP withdrew is not trusted for longer than the
# refresh interval would; each JWKS refresh forgets them all.
_VERIFIED_CACHE_ENTRIES = 1024
_VERIFIED_CACHE_SECONDS = 60.0
# Longer tokens are verified every time rather than held in memory.
_VERIFIED_CACHE_MAX_TOKEN = 4096


def _monotonic() -> float:
    # A seam for tests, which cannot patch time.monotonic (the event loop uses it).
    return time.monotonic()


def _now() -> float:
    # The wall clock that `exp` is compared with (a seam for tests, like _monotonic).
    return time.time()


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the token's ``sub``, and whether it holds the admin role."""

    user_id: str
    is_admin: bool = False


@dataclass(frozen=True, slots=True)
class _JwksKey:
    kid: str | None
    algorithm: str
    key: Any  # a jose Key, built once per fetch rather than once per request


def extract_bearer_token(authorization: str | None) -> str:
    """The token of ``Authorization: Bearer <t>`` (or ``JWT <t>``, as Open Event clients send)."""
    header = (authorization or "").strip()
    if not header:
        raise Unauthorized(
            "An Authorization: Bearer <token> header is required.", code="missing_token"
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    # split() cuts at every whitespace character: more than one piece means the
    # token holds one (a character-by-character test cost more than the rest).
    if scheme.lower() not in ("bearer", "jwt") or len(token.split(None, 1)) != 1:
        raise Unauthorized(
            "The Authorization header must be 'Bearer <token>'.", code="invalid_token"
        )
    return token


def _words(value: object) -> list[str]:
    # `roles` is usually a list, `scope` a space-separated string (OAuth 2);
    # IdPs mix both up, and anything else (numbers, objects) grants nothing.
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _is_admin(claims: dict[str, Any], *, audience_checked: bool) -> bool:
    """The ``admin`` role, in the ``roles`` or the ``scope`` claim (docs/api.md).

    A role means something only to the service a token is addressed to: an
    identity provider's ``scope: admin`` for another API (another ``aud``)
    must not make an admin here. So the role counts when the audience was
    checked against ours, or when the token names no audience at all (the
    tokens ``mint_token`` makes without a configured audience).
    """
    if not audience_checked and "aud" in claims:
        return False
    return _ADMIN_ROLE in _words(claims.get("roles")) or _ADMIN_ROLE in _words(claims.get("scope"))


# The user id ends up in `owner_id` columns (255 characters) and in object keys.
MAX_SUBJECT_LENGTH = 255


def _subject_problem(subject: str) -> str | None:
    """Why a ``sub`` cannot be a user id, or None when it can."""
    if len(subject) > MAX_SUBJECT_LENGTH:
        return f"The token's 'sub' is longer than {MAX_SUBJECT_LENGTH} characters."
    # Control characters (NUL, newlines) break logs and some databases;
    # lone surrogates cannot even be encoded for the database.
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in subject):
        return "The token's 'sub' contains control characters."
    return None


def _jwks_algorithm(data: dict[str, Any]) -> str | None:
    """The one algorithm a JWK may verify, or None when it may verify none."""
    if data.get("use", "sig") != "sig":
        return None
    kty = data.get("kty")
    if kty == "RSA":
        algorithm = "RS256"
    elif kty == "EC" and data.get("crv") == "P-256":
        algorithm = "ES256"
    else:
        return None
    # A key that names its algorithm is held to it.
    return algorithm if data.get("alg", algorithm) == algorithm else None


def _parse_jwks(document: object) -> list[_JwksKey]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWK set")
    keys: list[_JwksKey] = []
    for data in document["keys"]:
        if not isinstance(data, dict):
            continue
        algorithm = _jwks_algorithm(data)
        if algorithm is None:
            continue
        kid = data.get("kid")
        try:
            key = jwk.construct(data, algorithm)
        except Exception:  # one unusable key must not hide the others
            logger.warning("JWKS key %r is not usable; skipped", kid)
            continue
        keys.append(
            _JwksKey(kid=kid if isinstance(kid, str) else None, algorithm=algorithm, key=key)
        )
    return keys


class TokenVerifier:
    """Verifies tokens; one per process (made in the lifespan), safe for concurrent use."""

    def __init__(self, settings: Settings, http_client: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._jwks_url = settings.jwt_jwks_url
        self._hmac_key: Any = None
        secret = settings.effective_jwt_secret
        if secret is not None:
            try:
                self._hmac_key = jwk.construct(secret, _HS256)
            except JOSEError as exc:
                # jose refuses PEM/SSH keys as HMAC secrets: that is the key
                # confusion this module exists to prevent, so fail at startup.
                raise ValueError(f"UPLOADSVC_JWT_SECRET is not usable: {exc}") from None
        self._owns_client = http_client is None
        self._client = http_client
        self._keys: list[_JwksKey] = []
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._refresh_lock = asyncio.Lock()
        # token -> (principal, wall-clock deadline from `exp`, monotonic deadline)
        self._verified: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()

    async def aclose(self) -> None:
        """Close the HTTP client, if this verifier created it."""
        if self._owns_client and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def verify(self, token: str) -> Principal:
        """The caller a token names; raises :class:`Unauthorized` (only) when it is not valid."""
        cached = self._verified.get(token)
        if cached is not None:
            principal, valid_until, cached_until = cached
            # Within `exp` plus the leeway jose allows, jose would accept it too;
            # past that, the full check below gives the answer (token_expired).
            if _now() < valid_until and _monotonic() < cached_until:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        try:
            principal, expires = await self._verify(token)
        except Unauthorized:
            raise
        except Exception:  # untrusted input must answer 401, never 500
            logger.warning("token verification failed unexpectedly", exc_info=True)
            raise Unauthorized("The token is malformed.", code="invalid_token") from None
        if len(token) <= _VERIFIED_CACHE_MAX_TOKEN:
            self._remember(token, principal, expires + self._settings.jwt_leeway_seconds)
        return principal

    def _remember(self, token: str, principal: Principal, valid_until: float) -> None:
        self._verified[token] = (
            principal,
            valid_until,
            _monotonic() + _VERIFIED_CACHE_SECONDS,
        )
        if len(self._verified) > _VERIFIED_CACHE_ENTRIES:
            self._verified.popitem(last=False)

    async def _verify(self, token: str) -> tuple[Principal, float]:
        """The principal, and the token's ``exp``."""
        try:
            header = jwt.get_unverified_header(token)
        except (JOSEError, ValueError, TypeError, KeyError):
            raise Unauthorized("The token is malformed.", code="invalid_token") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str):
            raise Unauthorized("The token names no algorithm.", code="unsupported_algorithm")
        if "crit" in header:
            # RFC 7515 §4.1.11: critical extensions must be understood; none are.
            raise Unauthorized("The token has critical extensions.", code="invalid_token")
        if algorithm == _HS256 and self._hmac_key is not None:
            key = self._hmac_key
        elif algorithm in _JWKS_ALGORITHMS and self._jwks_url is not None:
            key = await self._jwks_key(header.get("kid"), algorithm)
        else:
            raise Unauthorized(
                f"Tokens signed with {algorithm[:20]!r} are not accepted.",
                code="unsupported_algorithm",
            )
        claims = self._decode(token, key, algorithm)
        audience_checked = self._settings.jwt_audience is not None
        principal = Principal(
            user_id=claims["sub"], is_admin=_is_admin(claims, audience_checked=audience_checked)
        )
        return principal, float(claims["exp"])

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        """Checks the signature, then the claims; returns claims with a string ``sub``."""
        settings = self._settings
        options = {
            # jose treats missing `exp`/`sub`/`aud` as fine; they are checked
            # below so that their absence is reported as `invalid_claims`.
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
        if not isinstance(claims.get("exp"), int | float):
            raise Unauthorized("The token has no 'exp' claim.", code="invalid_claims")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("The token has no 'sub' claim.", code="invalid_claims")
        problem = _subject_problem(subject)
        if problem is not None:
            raise Unauthorized(problem, code="invalid_claims")
        if settings.jwt_audience is not None and "aud" not in claims:
            raise Unauthorized("The token has no 'aud' claim.", code="invalid_claims")
        return claims

    async def _jwks_key(self, kid: object, algorithm: str) -> Any:
        """The JWKS key for ``kid`` that may verify ``algorithm``; refetches when due."""
        key = self._find_key(kid, algorithm)
        if key is None or self._is_stale():
            await self._refresh()
            key = self._find_key(kid, algorithm)
        if key is None:
            if self._fetched_at is None:
                raise Unauthorized(
                    "The identity provider's keys could not be fetched.", code="jwks_unavailable"
                )
            raise Unauthorized("The token's key is not known.", code="invalid_token")
        return key

    def _find_key(self, kid: object, algorithm: str) -> Any:
        # Only keys of the token's algorithm are candidates: an RS256 token
        # naming an EC key's kid finds nothing.
        fitting = [key for key in self._keys if key.algorithm == algorithm]
        if kid is None:
            # Single-key IdPs often omit kid; with several keys, guessing is not safe.
            return fitting[0].key if len(fitting) == 1 else None
        return next((key.key for key in fitting if key.kid == kid), None)

    def _is_stale(self) -> bool:
        fetched = self._fetched_at
        return fetched is not None and _monotonic() - fetched >= _JWKS_MAX_AGE_SECONDS

    def _may_refresh(self) -> bool:
        last = self._attempted_at
        return last is None or _monotonic() - last >= _JWKS_REFRESH_SECONDS

    async def _refresh(self) -> None:
        # Every caller takes the lock, so requests arriving while a fetch is
        # in flight wait for its keys instead of failing; the check inside
        # makes them reuse that fetch rather than start their own.
        async with self._refresh_lock:
            if not self._may_refresh():
                return
            assert self._jwks_url is not None
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=_JWKS_TIMEOUT_SECONDS)
            self._attempted_at = _monotonic()
            try:
                response = await self._client.get(self._jwks_url, timeout=_JWKS_TIMEOUT_SECONDS)
                response.raise_for_status()
                keys = _parse_jwks(response.json())
            except (httpx.HTTPError, ValueError) as exc:
                # Keep the keys we had; try again after the refresh interval.
                logger.warning("fetching the JWKS from %s failed: %r", self._jwks_url, exc)
                return
            # Tokens verified with a key the IdP has since withdrawn must not
            # live on in the cache; the others are verified again once.
            self._verified.clear()
            self._keys = keys
            self._fetched_at = _monotonic()


def mint_token(
    settings: Settings, *, sub: str, admin: bool = False, ttl_seconds: int = 86400
) -> str:
    """An HS256 token the configured secret accepts (``uploadsvc token``, development, tests).

    ``admin=True`` adds ``roles: ["admin"]``, the role docs/api.md grants access to
    every user's objects.
    """
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
    token: str = jwt.encode(claims, secret, algorithm=_HS256)
    return token
