"""Settings: documented, and strict about secrets outside development."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support import REPO_ROOT
from uploadsvc.config import DEV_JWT_SECRET, Settings
from uploadsvc.profiles import Purpose, profile_for


def test_env_example_documents_every_setting() -> None:
    documented = set(
        re.findall(r"^(UPLOADSVC_\w+)=", (REPO_ROOT / ".env.example").read_text(), re.M)
    )
    assert documented == {f"UPLOADSVC_{name.upper()}" for name in Settings.model_fields}


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"jwt_secret": DEV_JWT_SECRET, "signing_secret": "x" * 40},
        {"jwt_secret": "y" * 40},
    ],
    ids=["nothing-set", "placeholder-jwt-secret", "placeholder-signing-secret"],
)
def test_production_refuses_placeholder_secrets(values: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, env="production", **values)  # type: ignore[arg-type]


def test_production_starts_with_real_secrets() -> None:
    settings = Settings(
        _env_file=None,
        env="production",
        jwt_secret="y" * 40,
        signing_secret="x" * 40,
    )
    assert settings.effective_jwt_secret == "y" * 40


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPLOADSVC_JWT_SECRET", "")
    monkeypatch.setenv("UPLOADSVC_S3_ENDPOINT_URL", "")
    settings = Settings(_env_file=None)
    assert settings.jwt_secret is None
    assert settings.s3_endpoint_url is None
    assert settings.effective_jwt_secret == DEV_JWT_SECRET


def test_cli_refuses_to_start_in_production_with_placeholders(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "uploadsvc", "token", "--sub", "alice"],
        cwd=tmp_path,
        env={"UPLOADSVC_ENV": "production", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "UPLOADSVC_JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_avatars_variant_sizes_come_from_its_own_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("UPLOADSVC_ENV", "development")
    monkeypatch.setenv("UPLOADSVC_IMAGE_AVATAR_PX", '{"large": 400, "icon": 0}')
    settings = Settings(_env_file=None)
    avatar = profile_for(settings, Purpose.AVATAR).variant_px
    assert avatar == {"large": 400, "thumbnail": 512, "small": 256, "icon": 0}
    attachment = profile_for(settings, Purpose.ATTACHMENT).variant_px
    assert attachment == {"large": 1280, "thumbnail": 512, "small": 256, "icon": 64}
    monkeypatch.setenv("UPLOADSVC_IMAGE_AVATAR_PX", '{"large": 9000}')
    with pytest.raises(ValidationError, match="8192"):
        Settings(_env_file=None)
    monkeypatch.setenv("UPLOADSVC_IMAGE_AVATAR_PX", '{"huge": 100}')
    with pytest.raises(ValidationError):
        Settings(_env_file=None)
