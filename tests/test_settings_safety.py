"""Production is the default, and refuses what would let anyone in.

The rules are in docs/api.md, "Security bounds".

Only ``uploadsvc dev`` runs in development, where the public placeholder
secrets are accepted. Everything else starts as production: real secrets
of at least 32 bytes, the audience and issuer with a JWKS, and settings
errors that never print a secret.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from jose import jwt
from pydantic import ValidationError

from tests.support.servers import free_loopback_port
from uploadsvc import cli
from uploadsvc.config import DEV_JWT_SECRET, DEV_SIGNING_SECRET, Settings
from uploadsvc.errors import Unauthorized
from uploadsvc.security import Principal, TokenVerifier

UPLOADSVC = str(Path(sys.executable).with_name("uploadsvc"))
SECRET_32 = "s" * 32
JWKS_URL = "https://idp.example/.well-known/jwks.json"


@pytest.fixture(autouse=True)
def _no_uploadsvc_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    # conftest.py makes the test process development; these tests are about the default.
    monkeypatch.delenv("UPLOADSVC_ENV", raising=False)


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


def _clean_env() -> dict[str, str]:
    """A process environment with no UPLOADSVC_* settings at all."""
    return {"PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}


def test_production_is_the_default() -> None:
    settings = _settings(jwt_secret=SECRET_32, signing_secret=SECRET_32)
    assert settings.env == "production"
    assert not settings.is_development


def test_nothing_configured_is_refused_by_default() -> None:
    with pytest.raises(ValidationError) as refused:
        _settings()
    assert "UPLOADSVC_JWT_SECRET" in str(refused.value)


@pytest.mark.parametrize("name", ["jwt_secret", "signing_secret"])
def test_production_secrets_have_at_least_32_bytes(name: str) -> None:
    values = {"jwt_secret": SECRET_32, "signing_secret": SECRET_32}
    _settings(**values)  # exactly 32 bytes is enough
    with pytest.raises(ValidationError) as refused:
        _settings(**{**values, name: "s" * 31})
    assert f"UPLOADSVC_{name.upper()}" in str(refused.value)
    assert "32 bytes" in str(refused.value)
    # Bytes, not characters: 16 two-byte characters are 32 bytes.
    _settings(**{**values, name: "é" * 16})


def test_the_signing_secret_matters_only_with_local_storage() -> None:
    settings = _settings(jwt_secret=SECRET_32, storage_backend="s3")
    assert settings.signing_secret.get_secret_value() == DEV_SIGNING_SECRET


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"jwt_audience": "uploadsvc"},
        {"jwt_issuer": "https://idp.example"},
    ],
    ids=["neither", "no-issuer", "no-audience"],
)
def test_production_with_a_jwks_needs_audience_and_issuer(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(jwt_jwks_url=JWKS_URL, signing_secret=SECRET_32, **values)
    assert "UPLOADSVC_JWT_AUDIENCE and UPLOADSVC_JWT_ISSUER" in str(refused.value)


def test_production_with_a_jwks_starts_with_audience_and_issuer() -> None:
    settings = _settings(
        jwt_jwks_url=JWKS_URL,
        jwt_audience="uploadsvc",
        jwt_issuer="https://idp.example",
        signing_secret=SECRET_32,
    )
    assert settings.effective_jwt_secret is None  # no shared secret: tokens come from the IdP


def test_development_still_accepts_the_placeholders() -> None:
    settings = _settings(env="development", jwt_jwks_url=JWKS_URL)
    assert settings.is_development
    assert _settings(env="development").effective_jwt_secret == DEV_JWT_SECRET


@pytest.mark.parametrize("name", ["jwt_secret", "signing_secret"])
def test_a_refused_secret_is_not_shown(name: str) -> None:
    # pydantic shows a failed model's input (every value) unless told not to.
    secret = "short-but-secret"
    values = {"jwt_secret": SECRET_32, "signing_secret": SECRET_32, name: secret}
    with pytest.raises(ValidationError) as refused:
        _settings(**values)
    assert f"UPLOADSVC_{name.upper()}" in str(refused.value)
    assert secret not in str(refused.value)
    assert SECRET_32 not in str(refused.value)


def test_a_refused_setting_next_to_a_secret_does_not_show_it() -> None:
    with pytest.raises(ValidationError) as refused:
        _settings(jwt_secret=SECRET_32, signing_secret=SECRET_32, database_pool_size="many")
    assert "database_pool_size" in str(refused.value)
    assert SECRET_32 not in str(refused.value)
    assert "many" not in str(refused.value)


def test_serve_without_configuration_refuses_to_start(tmp_path: Path) -> None:
    """Before, `serve` with nothing set ran in development and took the public dev secret."""
    result = subprocess.run(
        [UPLOADSVC, "serve", "--port", str(free_loopback_port())],
        cwd=tmp_path,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=60,  # a hang bound: a server that started would run until killed
        check=False,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "UPLOADSVC_JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_never_prints_a_refused_secret(tmp_path: Path) -> None:
    secret = "tooshort-but-still-secret"
    result = subprocess.run(
        [UPLOADSVC, "token", "--sub", "alice"],
        cwd=tmp_path,
        env={**_clean_env(), "UPLOADSVC_JWT_SECRET": secret},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "UPLOADSVC_JWT_SECRET" in result.stderr
    assert secret not in result.stderr + result.stdout


def test_only_the_dev_command_runs_in_development(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # tests/test_dev_server.py runs `uploadsvc dev` for real; here, what each command gets.
    monkeypatch.chdir(tmp_path)  # no stray .env
    seen: list[Settings] = []

    def record(settings: Settings, _: object) -> int:
        seen.append(settings)
        return 0

    monkeypatch.setattr(cli, "_dev", record)
    monkeypatch.setattr(cli, "_migrate", record)
    assert cli.main(["dev"]) == 0
    assert cli.main(["migrate"]) == 2  # production: refused without secrets
    monkeypatch.setenv("UPLOADSVC_JWT_SECRET", SECRET_32)
    monkeypatch.setenv("UPLOADSVC_SIGNING_SECRET", SECRET_32)
    assert cli.main(["migrate"]) == 0
    assert [settings.env for settings in seen] == ["development", "production"]
    assert seen[0].effective_jwt_secret == DEV_JWT_SECRET


# --- the admin role is for tokens addressed to this service ----------------------------


def _hs256(**claims: Any) -> str:
    token: str = jwt.encode(
        {"sub": "mallory", "exp": int(time.time()) + 600, **claims}, SECRET_32, algorithm="HS256"
    )
    return token


@pytest.mark.parametrize(
    "claims",
    [{"aud": "billing-api", "scope": "admin"}, {"aud": ["billing-api"], "roles": ["admin"]}],
    ids=["scope", "roles"],
)
async def test_a_foreign_audience_never_makes_an_admin(claims: dict[str, Any]) -> None:
    # No audience configured: the token is accepted (aud is not checked), as a user.
    verifier = TokenVerifier(_settings(jwt_secret=SECRET_32, signing_secret=SECRET_32))
    try:
        principal = await verifier.verify(_hs256(**claims))
    finally:
        await verifier.aclose()
    assert principal == Principal(user_id="mallory", is_admin=False)


async def test_the_admin_role_counts_for_our_audience() -> None:
    settings = _settings(jwt_secret=SECRET_32, signing_secret=SECRET_32, jwt_audience="uploadsvc")
    verifier = TokenVerifier(settings)
    try:
        ours = await verifier.verify(_hs256(aud="uploadsvc", scope="files:read admin"))
        assert ours.is_admin
        # Without an audience claim the token was refused outright (aud is configured).
        with pytest.raises(Unauthorized) as refused:
            await verifier.verify(_hs256(scope="admin"))
        assert refused.value.code == "invalid_claims"
    finally:
        await verifier.aclose()
