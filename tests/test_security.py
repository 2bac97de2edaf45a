"""Token verification: HS256, RS256/ES256 from a real JWKS server, and attacks.

The rules are in docs/api.md, "Authentication".

The JWKS server is a real HTTP server on a loopback port, so fetching,
caching, refresh limits and outages are tested exactly as they happen in
production. Every refusal is checked for status 401 and its stable ``code``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import http.server
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt

from tests.support import tokens
from tests.support.servers import free_loopback_port, serve_in_thread
from uploadsvc import security
from uploadsvc.config import Settings
from uploadsvc.errors import Unauthorized
from uploadsvc.security import Principal, TokenVerifier, extract_bearer_token, mint_token

SECRET = "unit-test-secret-0123456789abcdef0123456789"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_P384_KEY = ec.generate_private_key(ec.SECP384R1())


def _pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key: PrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _public_jwk(key: PrivateKey, alg: str, kid: str, **extra: Any) -> dict[str, Any]:
    public: dict[str, Any] = jwk.construct(_public_pem(key), alg).to_dict()
    return {**public, "kid": kid, "use": "sig", **extra}


def _default_keys() -> list[dict[str, Any]]:
    return [_public_jwk(RSA_KEY, "RS256", "rsa-1"), _public_jwk(EC_KEY, "ES256", "ec-1")]


@dataclass
class JwksServer:
    """A loopback JWKS endpoint whose answers a test can change while it runs."""

    url: str
    keys: list[dict[str, Any]] = field(default_factory=_default_keys)
    hits: list[float] = field(default_factory=list)
    status: int = 200
    body: bytes | None = None  # served instead of the key set when set
    delay: float = 0.0


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # `_env_file=None` ignores .env, but Settings still reads the environment.
    for name in list(os.environ):
        if name.upper().startswith("UPLOADSVC_"):
            monkeypatch.delenv(name)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(time.monotonic())
            if state.delay:
                time.sleep(state.delay)
            body = state.body if state.body is not None else json.dumps({"keys": state.keys})
            data = body if isinstance(body, bytes) else body.encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    with serve_in_thread(Handler) as server:
        state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
        yield state


class Clock:
    """Moves the verifier's monotonic clock forward without touching the event loop's."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(security, "_monotonic", fake)
    return fake


MakeVerifier = Callable[..., TokenVerifier]


@pytest.fixture
async def make_verifier() -> AsyncIterator[MakeVerifier]:
    """Builds verifiers from explicit settings and closes them all afterwards."""
    made: list[TokenVerifier] = []

    def make(**values: Any) -> TokenVerifier:
        verifier = TokenVerifier(_settings(**values))
        made.append(verifier)
        return verifier

    yield make
    for verifier in made:
        await verifier.aclose()


def _settings(**values: Any) -> Settings:
    # Development unless a test says otherwise (production requires aud/iss with a JWKS).
    return Settings(_env_file=None, **{"env": "development", **values})


def _signed(key: PrivateKey, alg: str, kid: str | None, **claims: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    token: str = jwt.encode(tokens.claims(**claims), _pem(key), algorithm=alg, headers=headers)
    return token


async def _refused(verifier: TokenVerifier, token: str, code: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    assert caught.value.status == 401
    assert caught.value.code == code, caught.value.detail


# --- accepted tokens -------------------------------------------------------------------


async def test_hs256_token_is_accepted(make_verifier: MakeVerifier) -> None:
    principal = await make_verifier(jwt_secret=SECRET).verify(tokens.hs256(SECRET))
    assert principal == Principal(user_id="alice", is_admin=False)


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")]
)
async def test_jwks_tokens_are_accepted(
    jwks_server: JwksServer, make_verifier: MakeVerifier, key: PrivateKey, alg: str, kid: str
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    principal = await verifier.verify(_signed(key, alg, kid, roles=["admin"]))
    assert principal == Principal(user_id="alice", is_admin=True)


async def test_jwks_and_secret_together_accept_both(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url, jwt_secret=SECRET)
    assert (await verifier.verify(tokens.hs256(SECRET))).user_id == "alice"
    assert (await verifier.verify(_signed(RSA_KEY, "RS256", "rsa-1"))).user_id == "alice"


async def test_a_token_without_kid_uses_the_only_key_that_fits(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    # One RSA and one EC key: each algorithm has exactly one candidate.
    assert (await verifier.verify(_signed(EC_KEY, "ES256", None))).user_id == "alice"
    assert (await verifier.verify(_signed(RSA_KEY, "RS256", None))).user_id == "alice"


async def test_a_token_without_kid_is_refused_when_several_keys_fit(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    jwks_server.keys.append(_public_jwk(RSA_KEY_2, "RS256", "rsa-2"))
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    await _refused(verifier, _signed(RSA_KEY, "RS256", None), "invalid_token")


async def test_right_aud_and_iss_are_accepted(make_verifier: MakeVerifier) -> None:
    values = {"jwt_secret": SECRET, "jwt_audience": "uploadsvc", "jwt_issuer": "https://idp"}
    verifier = make_verifier(**values)
    assert (await verifier.verify(mint_token(_settings(**values), sub="bob"))).user_id == "bob"
    listed = tokens.hs256(SECRET, aud=["other", "uploadsvc"], iss="https://idp")
    assert (await verifier.verify(listed)).user_id == "alice"


async def test_expiry_within_the_leeway_is_accepted(make_verifier: MakeVerifier) -> None:
    verifier = make_verifier(jwt_secret=SECRET, jwt_leeway_seconds=30)
    assert (
        await verifier.verify(tokens.hs256(SECRET, exp=int(time.time()) - 10))
    ).user_id == "alice"
    await _refused(verifier, tokens.hs256(SECRET, exp=int(time.time()) - 60), "token_expired")


# --- algorithm and key confusion -------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
async def test_alg_none_is_refused(
    jwks_server: JwksServer, make_verifier: MakeVerifier, alg: str
) -> None:
    token = tokens.hand_built({"alg": alg, "typ": "JWT"}, tokens.claims())
    for values in (
        {"jwt_secret": SECRET},
        {"jwt_jwks_url": jwks_server.url},
        {"jwt_secret": SECRET, "jwt_jwks_url": jwks_server.url},
    ):
        await _refused(make_verifier(**values), token, "unsupported_algorithm")
    assert jwks_server.hits == []  # refused before any key was looked up


@pytest.mark.parametrize("header", [{"typ": "JWT"}, {"alg": ["HS256"]}, {"alg": None}])
async def test_a_header_without_a_string_alg_is_refused(
    make_verifier: MakeVerifier, header: dict[str, Any]
) -> None:
    token = tokens.hand_built(header, tokens.claims(), b"x" * 32)
    await _refused(make_verifier(jwt_secret=SECRET), token, "unsupported_algorithm")


async def test_algorithms_outside_the_allow_list_are_refused(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(jwt_secret=SECRET, jwt_jwks_url=jwks_server.url)
    for token in (
        jwt.encode(tokens.claims(), SECRET, algorithm="HS512"),
        _signed(RSA_KEY, "RS512", "rsa-1"),
        _signed(EC_P384_KEY, "ES384", "ec-1"),
        tokens.hand_built({"alg": "PS256", "kid": "rsa-1"}, tokens.claims(), b"x" * 256),
    ):
        await _refused(verifier, token, "unsupported_algorithm")


async def test_hs256_is_refused_without_a_secret(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    await _refused(
        make_verifier(jwt_jwks_url=jwks_server.url), tokens.hs256(SECRET), "unsupported_algorithm"
    )


async def test_rs256_is_refused_without_a_jwks_url(make_verifier: MakeVerifier) -> None:
    token = _signed(RSA_KEY, "RS256", "rsa-1")
    await _refused(make_verifier(jwt_secret=SECRET), token, "unsupported_algorithm")


async def test_hs256_signed_with_the_rsa_public_key_is_refused(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    # The classic confusion: an HMAC "secret" that is the public key anyone can fetch.
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing_input = f"{tokens.b64url(header)}.{tokens.b64url(tokens.claims())}"
    digest = hmac.new(_public_pem(RSA_KEY).encode(), signing_input.encode(), hashlib.sha256)
    token = f"{signing_input}.{tokens.b64url(digest.digest())}"

    await _refused(make_verifier(jwt_jwks_url=jwks_server.url), token, "unsupported_algorithm")
    both = make_verifier(jwt_jwks_url=jwks_server.url, jwt_secret=SECRET)
    await _refused(both, token, "invalid_token")


async def test_a_public_key_is_not_accepted_as_the_hmac_secret() -> None:
    with pytest.raises(ValueError, match="JWT_SECRET"):
        TokenVerifier(_settings(jwt_secret=_public_pem(RSA_KEY)))


@pytest.mark.parametrize(
    ("key", "alg", "kid"),
    [(RSA_KEY, "RS256", "ec-1"), (EC_KEY, "ES256", "rsa-1")],
    ids=["rs256-naming-ec-key", "es256-naming-rsa-key"],
)
async def test_a_token_naming_a_key_of_another_type_is_refused(
    jwks_server: JwksServer, make_verifier: MakeVerifier, key: PrivateKey, alg: str, kid: str
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    await _refused(verifier, _signed(key, alg, kid), "invalid_token")


async def test_jwks_keys_are_held_to_their_curve_alg_and_use(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    public_p384 = _public_jwk(EC_P384_KEY, "ES384", "p384")
    del public_p384["alg"]  # only the curve says this key is not for ES256
    jwks_server.keys = [
        public_p384,
        {**_public_jwk(RSA_KEY, "RS256", "rs512-only"), "alg": "RS512"},
        _public_jwk(RSA_KEY, "RS256", "for-encryption", use="enc"),
    ]
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    # ES256 signatures made with a P-384 key verify with that key unless the curve is checked.
    await _refused(verifier, _signed(EC_P384_KEY, "ES256", "p384"), "invalid_token")
    await _refused(verifier, _signed(RSA_KEY, "RS256", "rs512-only"), "invalid_token")
    await _refused(verifier, _signed(RSA_KEY, "RS256", "for-encryption"), "invalid_token")


async def test_critical_header_extensions_are_refused(make_verifier: MakeVerifier) -> None:
    token: str = jwt.encode(tokens.claims(), SECRET, headers={"crit": ["exp"], "exp": 1})
    await _refused(make_verifier(jwt_secret=SECRET), token, "invalid_token")


# --- claims ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        (tokens.claims(exp=int(time.time()) - 3600), "token_expired"),
        (tokens.claims(sub=None), "invalid_claims"),
        (tokens.claims(sub=""), "invalid_claims"),
        (tokens.claims(sub=42), "invalid_claims"),
        (tokens.claims(exp=None), "invalid_claims"),
        (tokens.claims(exp="tomorrow"), "invalid_claims"),
        (tokens.claims(nbf=int(time.time()) + 3600), "invalid_claims"),
        (tokens.claims(aud="someone-else", iss="https://idp.example"), "invalid_claims"),
        (tokens.claims(aud="uploadsvc", iss="https://evil.example"), "invalid_claims"),
        (tokens.claims(aud="uploadsvc"), "invalid_claims"),
        (tokens.claims(iss="https://idp.example"), "invalid_claims"),
    ],
    ids=[
        "expired",
        "no-sub",
        "empty-sub",
        "numeric-sub",
        "no-exp",
        "text-exp",
        "not-yet-valid",
        "wrong-aud",
        "wrong-iss",
        "missing-iss",
        "missing-aud",
    ],
)
async def test_bad_claims_are_refused(
    make_verifier: MakeVerifier, claims: dict[str, Any], code: str
) -> None:
    verifier = make_verifier(
        jwt_secret=SECRET, jwt_audience="uploadsvc", jwt_issuer="https://idp.example"
    )
    await _refused(verifier, jwt.encode(claims, SECRET), code)


async def test_aud_and_iss_are_not_checked_when_not_configured(
    make_verifier: MakeVerifier,
) -> None:
    token = tokens.hs256(SECRET, aud="anyone", iss="https://anywhere")
    assert (await make_verifier(jwt_secret=SECRET).verify(token)).user_id == "alice"


async def test_claims_from_jwks_tokens_are_checked_too(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url, jwt_audience="uploadsvc")
    expired = _signed(EC_KEY, "ES256", "ec-1", aud="uploadsvc", exp=int(time.time()) - 3600)
    await _refused(verifier, expired, "token_expired")
    await _refused(verifier, _signed(RSA_KEY, "RS256", "rsa-1", aud="x"), "invalid_claims")


# --- forged and malformed tokens -------------------------------------------------------


async def test_tampered_tokens_are_refused(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(jwt_secret=SECRET, jwt_jwks_url=jwks_server.url)
    for token in (
        tokens.hs256(SECRET),
        _signed(RSA_KEY, "RS256", "rsa-1"),
        _signed(EC_KEY, "ES256", "ec-1"),
    ):
        head, payload, signature = token.split(".")
        forged_payload = tokens.b64url(tokens.claims(sub="mallory", roles=["admin"]))
        await _refused(verifier, f"{head}.{forged_payload}.{signature}", "invalid_token")
        flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
        await _refused(verifier, f"{head}.{payload}.{flipped}", "invalid_token")
        await _refused(verifier, f"{head}.{payload}.", "invalid_token")
    await _refused(verifier, tokens.hs256("another-secret-0123456789abcdef"), "invalid_token")
    # Signed by a key the JWKS does not hold, under a kid it does.
    await _refused(verifier, _signed(RSA_KEY_2, "RS256", "rsa-1"), "invalid_token")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "x.y.z",
        "....",
        "not a token",
        "eyJhbGciOiJIUzI1NiJ9.e30",
        "eyJhbGciOiJIUzI1NiJ9.!!!.abc",
        "eyJhbGciOiJIUzI1NiJ9.e30.abc",  # payload {} has no claims, signature wrong
        f"{tokens.b64url([1, 2])}.e30.abc",  # header is JSON, not an object
        f"{tokens.b64url(b'[' * 100_000)}.e30.abc",  # nesting deep enough to overflow a parser
        f"{tokens.b64url({'alg': 'HS256'})}.{tokens.b64url(b'not json')}.abc",
    ],
    ids=lambda token: repr(token[:24]),
)
async def test_garbage_is_refused(make_verifier: MakeVerifier, token: str) -> None:
    await _refused(make_verifier(jwt_secret=SECRET), token, "invalid_token")


# --- JWKS fetching, caching and outages ------------------------------------------------


async def test_unknown_kid_refetches_at_most_once_a_minute(
    jwks_server: JwksServer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    good = _signed(RSA_KEY, "RS256", "rsa-1")
    rotated = _signed(RSA_KEY_2, "RS256", "rsa-2")
    await verifier.verify(good)
    assert len(jwks_server.hits) == 1

    for _ in range(5):
        await _refused(verifier, rotated, "invalid_token")
        clock.advance(10)
    await verifier.verify(good)
    assert len(jwks_server.hits) == 1  # 50 s: cached keys, no refetch yet

    # The IdP rotates its key; once the minute is over, one fetch picks it up.
    jwks_server.keys.append(_public_jwk(RSA_KEY_2, "RS256", "rsa-2"))
    clock.advance(11)
    assert (await verifier.verify(rotated)).user_id == "alice"
    for _ in range(5):
        await verifier.verify(rotated)
        await _refused(verifier, _signed(RSA_KEY, "RS256", "never-seen"), "invalid_token")
    assert len(jwks_server.hits) == 2


async def test_concurrent_requests_share_one_fetch(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    jwks_server.delay = 0.2  # every request arrives while the first fetch is in flight
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    tokens = [_signed(RSA_KEY, "RS256", "rsa-1"), _signed(EC_KEY, "ES256", "ec-1")] * 10
    principals = await asyncio.gather(*(verifier.verify(token) for token in tokens))
    assert {principal.user_id for principal in principals} == {"alice"}
    assert len(jwks_server.hits) == 1


async def test_concurrent_unknown_kids_share_one_refetch(
    jwks_server: JwksServer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    await verifier.verify(_signed(RSA_KEY, "RS256", "rsa-1"))
    clock.advance(61)
    jwks_server.delay = 0.2
    forged = [_signed(RSA_KEY, "RS256", f"forged-{n}") for n in range(20)]
    results = await asyncio.gather(
        *(verifier.verify(token) for token in forged), return_exceptions=True
    )
    assert all(isinstance(result, Unauthorized) for result in results)
    assert {result.code for result in results if isinstance(result, Unauthorized)} == {
        "invalid_token"
    }
    assert len(jwks_server.hits) == 2


async def test_keys_are_refetched_when_old_and_withdrawn_keys_stop_working(
    jwks_server: JwksServer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    token = _signed(RSA_KEY, "RS256", "rsa-1")
    await verifier.verify(token)
    jwks_server.keys = [_public_jwk(EC_KEY, "ES256", "ec-1")]  # the IdP withdraws rsa-1
    clock.advance(300)
    await verifier.verify(token)  # still cached
    clock.advance(301)
    await _refused(verifier, token, "invalid_token")
    assert len(jwks_server.hits) == 2


# --- the cache of verified tokens --------------------------------------------------


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens whose signature and claims jose checked (a spy: jose still does it)."""
    seen: list[str] = []
    real = jwt.decode

    def spy(token: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(token)
        return real(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", spy)
    return seen


async def test_a_verified_token_is_checked_once_while_its_exp_allows(
    make_verifier: MakeVerifier, decoded: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier = make_verifier(jwt_secret=SECRET, jwt_leeway_seconds=5)
    exp = int(time.time()) + 100
    token = tokens.hs256(SECRET, exp=exp)
    for _ in range(3):
        assert (await verifier.verify(token)).user_id == "alice"
    assert decoded == [token]
    # Past exp plus the leeway the remembered answer is not used: jose decides again.
    monkeypatch.setattr(security, "_now", lambda: exp + 5.5)
    await verifier.verify(token)
    assert decoded == [token, token]


async def test_a_verified_token_is_remembered_for_a_minute_at_most(
    make_verifier: MakeVerifier, decoded: list[str], clock: Clock
) -> None:
    verifier = make_verifier(jwt_secret=SECRET)
    token = tokens.hs256(SECRET)
    await verifier.verify(token)
    clock.advance(59)
    await verifier.verify(token)
    assert len(decoded) == 1
    clock.advance(2)
    await verifier.verify(token)
    assert len(decoded) == 2


async def test_a_jwks_refresh_forgets_tokens_of_withdrawn_keys(
    jwks_server: JwksServer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    token, verifier = (
        _signed(RSA_KEY, "RS256", "rsa-1"),
        make_verifier(jwt_jwks_url=jwks_server.url),
    )
    first_fetch_at_0s = await verifier.verify(_signed(EC_KEY, "ES256", "ec-1"))
    assert first_fetch_at_0s.user_id == "alice"
    clock.advance(50)
    await verifier.verify(token)  # remembered until 110 s
    jwks_server.keys = [_public_jwk(EC_KEY, "ES256", "ec-1")]  # the IdP withdraws rsa-1
    clock.advance(11)
    await _refused(verifier, _signed(RSA_KEY_2, "RS256", "rsa-2"), "invalid_token")  # refetches
    assert len(jwks_server.hits) == 2
    await _refused(verifier, token, "invalid_token")


@pytest.mark.parametrize(
    ("status", "body"),
    [(503, b"{}"), (200, b"<html>not json</html>"), (200, b'{"keys": 5}'), (200, b"[]")],
    ids=["http-503", "not-json", "keys-not-a-list", "not-an-object"],
)
async def test_a_failing_jwks_endpoint_answers_jwks_unavailable(
    jwks_server: JwksServer, make_verifier: MakeVerifier, clock: Clock, status: int, body: bytes
) -> None:
    jwks_server.status, jwks_server.body = status, body
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    token = _signed(RSA_KEY, "RS256", "rsa-1")
    await _refused(verifier, token, "jwks_unavailable")
    await _refused(verifier, token, "jwks_unavailable")
    assert len(jwks_server.hits) == 1  # a failed fetch also waits out the minute

    jwks_server.status, jwks_server.body = 200, None
    clock.advance(61)
    assert (await verifier.verify(token)).user_id == "alice"
    assert len(jwks_server.hits) == 2


async def test_an_unreachable_jwks_server_answers_jwks_unavailable(
    make_verifier: MakeVerifier,
) -> None:
    port = free_loopback_port()
    verifier = make_verifier(jwt_jwks_url=f"http://127.0.0.1:{port}/jwks.json")
    await _refused(verifier, _signed(RSA_KEY, "RS256", "rsa-1"), "jwks_unavailable")


async def test_cached_keys_outlive_a_jwks_outage(
    jwks_server: JwksServer, make_verifier: MakeVerifier, clock: Clock
) -> None:
    verifier = make_verifier(jwt_jwks_url=jwks_server.url)
    token = _signed(EC_KEY, "ES256", "ec-1")
    await verifier.verify(token)
    jwks_server.status = 500
    clock.advance(3600)
    assert (await verifier.verify(token)).user_id == "alice"
    assert len(jwks_server.hits) == 2


async def test_a_given_http_client_is_used_and_left_open(jwks_server: JwksServer) -> None:
    async with httpx.AsyncClient() as client:
        verifier = TokenVerifier(_settings(jwt_jwks_url=jwks_server.url), http_client=client)
        await verifier.verify(_signed(RSA_KEY, "RS256", "rsa-1"))
        await verifier.aclose()
        assert not client.is_closed
        assert len(jwks_server.hits) == 1


# --- admin role and minted tokens ------------------------------------------------------


async def test_minted_tokens_round_trip_with_the_admin_role(make_verifier: MakeVerifier) -> None:
    settings = _settings(jwt_secret=SECRET, jwt_audience="uploadsvc", jwt_issuer="https://idp")
    verifier = make_verifier(jwt_secret=SECRET, jwt_audience="uploadsvc", jwt_issuer="https://idp")
    admin_token = mint_token(settings, sub="root", admin=True, ttl_seconds=60)
    assert await verifier.verify(admin_token) == Principal(user_id="root", is_admin=True)
    assert await verifier.verify(mint_token(settings, sub="bob")) == Principal("bob", False)

    claims = jwt.get_unverified_claims(admin_token)
    assert claims["roles"] == ["admin"]
    assert claims["aud"] == "uploadsvc"
    assert claims["iss"] == "https://idp"
    assert claims["exp"] - claims["iat"] == 60
    assert jwt.get_unverified_header(admin_token)["alg"] == "HS256"

    expired = mint_token(settings, sub="bob", ttl_seconds=-3600)
    await _refused(verifier, expired, "token_expired")


async def test_the_development_secret_mints_and_verifies(make_verifier: MakeVerifier) -> None:
    settings = _settings()  # development, nothing configured
    assert settings.effective_jwt_secret is not None
    assert (await make_verifier().verify(mint_token(settings, sub="dev"))).user_id == "dev"


def test_mint_token_needs_a_secret() -> None:
    settings = _settings(jwt_jwks_url="https://idp.example/jwks.json")
    with pytest.raises(RuntimeError):
        mint_token(settings, sub="bob")


@pytest.mark.parametrize(
    ("claims", "is_admin"),
    [
        ({"roles": ["admin"]}, True),
        ({"roles": ["reader", "admin"]}, True),
        ({"roles": "admin"}, True),
        ({"scope": "files:read admin"}, True),
        ({"scope": ["admin"]}, True),
        ({"roles": ["administrator"], "scope": "admins"}, False),
        ({"admin": True}, False),  # docs/api.md: the role lives in `roles` or `scope` only
        ({"roles": {"admin": True}, "scope": 5}, False),
        ({"roles": [1, None, {"admin": 1}], "scope": None}, False),
    ],
)
async def test_the_admin_role(
    make_verifier: MakeVerifier, claims: dict[str, Any], is_admin: bool
) -> None:
    principal = await make_verifier(jwt_secret=SECRET).verify(tokens.hs256(SECRET, **claims))
    assert principal.is_admin is is_admin


# --- the Authorization header ----------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc.def.ghi", "abc.def.ghi"),
        ("BEARER abc.def.ghi", "abc.def.ghi"),
        ("JWT abc.def.ghi", "abc.def.ghi"),
        ("jwt abc.def.ghi", "abc.def.ghi"),
        ("Bearer  abc.def.ghi ", "abc.def.ghi"),
    ],
)
def test_extract_bearer_token(header: str, token: str) -> None:
    assert extract_bearer_token(header) == token


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("   ", "missing_token"),
        ("Basic YWxpY2U6c2VjcmV0", "invalid_token"),
        ("Token abc.def.ghi", "invalid_token"),
        ("Bearer", "invalid_token"),
        ("Bearer ", "invalid_token"),
        ("Bearer abc def", "invalid_token"),
        ("Bearerabc.def.ghi", "invalid_token"),
    ],
)
def test_extract_bearer_token_refuses(header: str | None, code: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        extract_bearer_token(header)
    assert caught.value.status == 401
    assert caught.value.code == code


async def test_verify_never_raises_anything_but_unauthorized(
    jwks_server: JwksServer, make_verifier: MakeVerifier
) -> None:
    verifier = make_verifier(jwt_secret=SECRET, jwt_jwks_url=jwks_server.url)
    odd_tokens: list[str] = [
        tokens.hand_built({"alg": "HS256", "kid": ["x"]}, tokens.claims(), b"x" * 32),
        tokens.hand_built({"alg": "RS256", "kid": {"a": 1}}, tokens.claims(), b"x" * 256),
        tokens.hand_built({"alg": "ES256"}, {"sub": "a"}, b"x" * 64),
        tokens.hs256(SECRET, exp=float("inf")),  # JSON "Infinity": int() of it overflows
        tokens.hs256(SECRET, exp=float("nan")),
        "\x00.\x00.\x00",
        "é.é.é",
    ]
    checks: list[Awaitable[Principal]] = [verifier.verify(token) for token in odd_tokens]
    for result in await asyncio.gather(*checks, return_exceptions=True):
        assert isinstance(result, Unauthorized), result
        assert result.status == 401
