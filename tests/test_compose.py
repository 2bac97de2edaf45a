"""compose.yaml is runnable documentation: it must name what the service really reads.

Docker is not needed: the file is parsed (PyYAML, which uvicorn[standard]
installs), its commands are parsed by the ``uploadsvc`` command line, its
``UPLOADSVC_*`` names are checked against the settings, and the environment
it gives the service (with ``${…}`` filled in as an operator's .env would)
must pass the production settings' checks.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]  # no stubs installed; one call

from uploadsvc.cli import _parser
from uploadsvc.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVICE_IMAGE = {"migrate", "storage-init", "api", "worker"}
# ${NAME:?message} must be set in .env; ${NAME:-default} has a default.
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<kind>[?-])(?P<rest>[^}]*))?\}")
STRONG_SECRET = "compose-test-secret-" + "x" * 32


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO_ROOT / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def fill(value: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        return match["rest"] if match["kind"] == "-" else STRONG_SECRET

    return VARIABLE.sub(substitute, value)


def test_compose_runs_the_stores_and_every_process(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "minio", *SERVICE_IMAGE}
    for name in SERVICE_IMAGE:
        assert services[name]["build"] == "."
    assert (REPO_ROOT / "Dockerfile").is_file()
    commands = {name: services[name]["command"] for name in SERVICE_IMAGE}
    assert commands["migrate"] == ["uploadsvc", "migrate"]
    assert commands["storage-init"] == ["uploadsvc", "storage", "init"]
    assert commands["api"][:2] == ["uploadsvc", "serve"]
    assert commands["worker"] == ["uploadsvc", "worker"]


def test_every_command_is_one_the_command_line_accepts(compose: dict[str, Any]) -> None:
    parser = _parser()
    for name in SERVICE_IMAGE:
        program, *arguments = compose["services"][name]["command"]
        assert program == "uploadsvc", name
        parsed = parser.parse_args(arguments)  # exits (fails the test) on an unknown option
        assert callable(parsed.handler), name


def test_the_api_starts_after_migrate_and_the_bucket_setup(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for needed, how in service.get("depends_on", {}).items():
            assert needed in services, (name, needed)
            assert how["condition"] in {"service_healthy", "service_completed_successfully"}
    api = services["api"]["depends_on"]
    assert api["migrate"]["condition"] == "service_completed_successfully"
    assert api["storage-init"]["condition"] == "service_completed_successfully"
    worker = services["worker"]["depends_on"]
    assert worker["migrate"]["condition"] == "service_completed_successfully"
    # The image's health check asks the API's port: the worker has its own.
    assert "/healthz" not in str(services["worker"]["healthcheck"]["test"])


def test_the_environment_names_real_settings_and_passes_production_checks(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SERVICE_IMAGE:
        environment = compose["services"][name]["environment"]
        unknown = [
            key
            for key in environment
            if key.removeprefix("UPLOADSVC_").lower() not in Settings.model_fields
            or not key.startswith("UPLOADSVC_")
        ]
        assert unknown == [], name
        for key in list(Settings.model_fields):
            monkeypatch.delenv(f"UPLOADSVC_{key.upper()}", raising=False)
        for key, value in environment.items():
            monkeypatch.setenv(key, fill(str(value)))
        settings = Settings(_env_file=None)
        assert settings.env == "production"
        assert settings.storage_backend == "s3"
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.database_url.startswith("postgresql+asyncpg://uploadsvc:")
        assert settings.database_url.endswith("@postgres:5432/uploadsvc")


def test_the_stores_use_the_credentials_the_service_is_given(compose: dict[str, Any]) -> None:
    services = compose["services"]
    environment = services["api"]["environment"]
    assert (
        environment["UPLOADSVC_S3_ACCESS_KEY_ID"]
        == services["minio"]["environment"]["MINIO_ROOT_USER"]
    )
    assert environment["UPLOADSVC_S3_SECRET_ACCESS_KEY"].startswith("${MINIO_ROOT_PASSWORD")
    assert services["minio"]["environment"]["MINIO_ROOT_PASSWORD"].startswith(
        "${MINIO_ROOT_PASSWORD"
    )
    assert "${POSTGRES_PASSWORD" in environment["UPLOADSVC_DATABASE_URL"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD"
    )
