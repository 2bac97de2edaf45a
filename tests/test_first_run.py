"""What a newcomer sees from the commands the README gives: `make dev`, `make token`, cleanup."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.devserver import clean_env, running_dev_server
from tests.support import REPO_ROOT
from tests.support.servers import UPLOADSVC

COMMAND_TIMEOUT_SECONDS = 120


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        # Every command but `dev` is production unless told: these run as a
        # developer runs them in a checkout (as the README says).
        env={**clean_env(), "UPLOADSVC_ENV": "development"},
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )


def test_dev_starts_with_the_demo_page_and_no_alembic_plugin_noise(tmp_path: Path) -> None:
    with running_dev_server(tmp_path) as dev:
        log = dev.log()
    assert "setup plugin" not in log
    # The migrations themselves still say what they did.
    assert "Running upgrade" in log
    banner = log[: log.index("dev token")]
    assert f"{dev.base_url}/demo" in banner
    assert f"{dev.base_url}/docs" in banner
    assert "make token" in log


def test_cleanup_dry_run_prints_its_summary_once(tmp_path: Path) -> None:
    migrated = _run([UPLOADSVC, "migrate"], tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    assert "setup plugin" not in migrated.stdout + migrated.stderr

    dry = _run([UPLOADSVC, "cleanup", "--dry-run"], tmp_path)
    assert dry.returncode == 0, dry.stderr
    output = dry.stdout + dry.stderr
    assert output.count("cleanup done:") == 1, output
    assert dry.stdout.startswith("cleanup done: scanned 0 objects, would delete 0")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_token_prints_a_dev_token_and_nothing_else() -> None:
    made = _run(["make", "-s", "token"], REPO_ROOT)
    assert made.returncode == 0, made.stdout + made.stderr
    [token] = made.stdout.split()
    _header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["sub"] == "dev-user"
    assert "exp" in claims
    assert signature
