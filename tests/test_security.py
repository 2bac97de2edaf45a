"""Token verification: HS256 secret, RS256/ES256 from a real JWKS server, and attacks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jose import jwk, jwt

from uploadsvc.config import Settings
from uploadsvc.errors import Unauthorized
from uploadsvc.security import TokenVerifier, extract_bearer_token, mint_token

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _public_jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, alg: str, kid: str) -> Any:
    public: dict[str, Any] = jwk.construct(_public_pem(key), alg).to_dict()
    return {**public, "kid": kid, "use": "sig"}


@dataclass
class JwksServer:
    url: str
    keys: list[dict[str, Any]]
    hits: list[float] = field(default_factory=list)
    down: bool = False


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer(
        url="",
        keys=[_public_jwk(RSA_KEY, "RS256", "rsa-1"), _public_jwk(EC_KEY, "ES256", "ec-1")],
    )

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(time.monotonic())
            if state.down:
                self.send_response(503)
                self.end_headers()
                return
            body = json.dumps({"keys": state.keys}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def _claims(**changes: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "alice", "exp": int(time.time()) + 600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


async def _refused(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        await verifier.verify(token)
    assert caught.value.status == 401
    return caught.value.code


async def test_hs256_token_is_accepted() -> None:
    verifier = TokenVerifier(_settings(jwt_secret=SECRET))
    principal = await verifier.verify(jwt.encode(_claims(), SECRET))
    assert principal.user_id == "alice"
    assert not principal.is_admin


@pytest.mark.parametrize(
    ("key", "alg", "kid"), [(RSA_KEY, "RS256", "rsa-1"), (EC_KEY, "ES256", "ec-1")]
)
async def test_jwks_tokens_are_accepted(
    jwks_server: JwksServer, key: Any, alg: str, kid: str
) -> None:
    verifier = TokenVerifier(_settings(jwt_jwks_url=jwks_server.url))
    try:
        token = jwt.encode(_claims(roles=["admin"]), _pem(key), algorithm=alg, headers={"kid": kid})
        principal = await verifier.verify(token)
    finally:
        await verifier.aclose()
    assert principal.user_id == "alice"
    assert principal.is_admin


async def test_alg_none_is_refused(jwks_server: JwksServer) -> None:
    token = _b64({"alg": "none", "typ": "JWT"}) + "." + _b64(_claims()) + "."
    for settings in (_settings(jwt_secret=SECRET), _settings(jwt_jwks_url=jwks_server.url)):
        assert await _refused(TokenVerifier(settings), token) == "unsupported_algorithm"


async def test_hs256_signed_with_the_rsa_public_key_is_refused(jwks_server: JwksServer) -> None:
    # The classic confusion: an HMAC "secret" that is the public key everyone can fetch.
    header = {"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}
    signing_input = _b64(header) + "." + _b64(_claims())
    signature = hmac.new(_public_pem(RSA_KEY).encode(), signing_input.encode(), hashlib.sha256)
    token = signing_input + "." + base64.urlsafe_b64encode(signature.digest()).rstrip(b"=").decode()

    jwks_only = TokenVerifier(_settings(jwt_jwks_url=jwks_server.url))
    assert await _refused(jwks_only, token) == "unsupported_algorithm"
    both = TokenVerifier(_settings(jwt_jwks_url=jwks_server.url, jwt_secret=SECRET))
    assert await _refused(both, token) == "invalid_token"
    await jwks_only.aclose()
    await both.aclose()


async def test_rs256_token_naming_an_ec_key_is_refused(jwks_server: JwksServer) -> None:
    verifier = TokenVerifier(_settings(jwt_jwks_url=jwks_server.url))
    token = jwt.encode(_claims(), _pem(RSA_KEY), algorithm="RS256", headers={"kid": "ec-1"})
    assert await _refused(verifier, token) == "invalid_token"
    await verifier.aclose()


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        (_claims(exp=int(time.time()) - 3600), "token_expired"),
        (_claims(sub=None), "invalid_claims"),
        (_claims(exp=None), "invalid_claims"),
        (_claims(aud="someone-else", iss="https://idp.example"), "invalid_claims"),
        (_claims(aud="uploadsvc", iss="https://evil.example"), "invalid_claims"),
        (_claims(aud="uploadsvc"), "invalid_claims"),
    ],
    ids=["expired", "no-sub", "no-exp", "wrong-aud", "wrong-iss", "missing-iss"],
)
async def test_bad_claims_are_refused(claims: dict[str, Any], code: str) -> None:
    settings = _settings(
        jwt_secret=SECRET, jwt_audience="uploadsvc", jwt_issuer="https://idp.example"
    )
    assert await _refused(TokenVerifier(settings), jwt.encode(claims, SECRET)) == code


async def test_right_aud_and_iss_are_accepted() -> None:
    settings = _settings(
        jwt_secret=SECRET, jwt_audience="uploadsvc", jwt_issuer="https://idp.example"
    )
    principal = await TokenVerifier(settings).verify(mint_token(settings, sub="bob"))
    assert principal.user_id == "bob"


async def test_tampered_and_garbage_tokens_are_refused() -> None:
    verifier = TokenVerifier(_settings(jwt_secret=SECRET))
    token = jwt.encode(_claims(), SECRET)
    head, _payload, signature = token.split(".")
    forged_payload = _b64(_claims(sub="mallory"))
    assert await _refused(verifier, f"{head}.{forged_payload}.{signature}") == "invalid_token"
    for garbage in ("", "a.b", "x.y.z", "....", "eyJhbGciOiJIUzI1NiJ9.e30"):
        assert await _refused(verifier, garbage) in ("invalid_token", "unsupported_algorithm")


async def test_unknown_kid_refetches_at_most_once_a_minute(jwks_server: JwksServer) -> None:
    verifier = TokenVerifier(_settings(jwt_jwks_url=jwks_server.url))
    good = jwt.encode(_claims(), _pem(RSA_KEY), algorithm="RS256", headers={"kid": "rsa-1"})
    await verifier.verify(good)
    assert len(jwks_server.hits) == 1
    unknown = jwt.encode(_claims(), _pem(RSA_KEY), algorithm="RS256", headers={"kid": "rotated"})
    for _ in range(5):
        assert await _refused(verifier, unknown) == "invalid_token"
    await verifier.verify(good)
    assert len(jwks_server.hits) == 1  # cached keys, no refetch inside the minute
    await verifier.aclose()


async def test_jwks_server_down_answers_401(jwks_server: JwksServer) -> None:
    jwks_server.down = True
    verifier = TokenVerifier(_settings(jwt_jwks_url=jwks_server.url))
    token = jwt.encode(_claims(), _pem(RSA_KEY), algorithm="RS256", headers={"kid": "rsa-1"})
    assert await _refused(verifier, token) == "jwks_unavailable"
    assert await _refused(verifier, token) == "jwks_unavailable"
    assert len(jwks_server.hits) == 1
    await verifier.aclose()


async def test_minted_tokens_round_trip_with_the_admin_role() -> None:
    settings = _settings(jwt_secret=SECRET)
    verifier = TokenVerifier(settings)
    assert (await verifier.verify(mint_token(settings, sub="root", admin=True))).is_admin
    assert not (await verifier.verify(mint_token(settings, sub="bob"))).is_admin
    scoped = jwt.encode(_claims(scope="files:read admin"), SECRET)
    assert (await verifier.verify(scoped)).is_admin


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("JWT abc.def.ghi", "abc.def.ghi"), ("bearer  t", "t")],
)
def test_extract_bearer_token(header: str, token: str) -> None:
    assert extract_bearer_token(header) == token


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("Basic x", "invalid_token"),
        ("Bearer", "invalid_token"),
    ],
)
def test_extract_bearer_token_refuses(header: str | None, code: str) -> None:
    with pytest.raises(Unauthorized) as caught:
        extract_bearer_token(header)
    assert caught.value.code == code
