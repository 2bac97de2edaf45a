"""The built wheel, installed into a fresh venv, migrates a fresh database.

The wheel is built from this checkout (``uv build``) and installed without
its dependencies into a new venv; the dependencies come from the project's
own venv, added behind the new venv's site-packages by a ``.pth`` file, so no
download is needed and the ``uploadsvc`` package imported is the wheel's.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.servers import uploadsvc_env

REPO_ROOT = Path(__file__).resolve().parents[1]
BUILD_TIMEOUT_SECONDS = 300
HEAD_REVISION = sorted((REPO_ROOT / "alembic" / "versions").glob("[0-9]*.py"))[-1].name


def uv_binary() -> str:
    # `uv run` names itself in UV; otherwise it is on PATH.
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.fail("uv is needed to build the wheel (put it on PATH)")
    return found


def run(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, f"{args}:\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel installed; its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    run([uv_binary(), "build", "--wheel", "--out-dir", str(root / "dist")], cwd=REPO_ROOT)
    (wheel,) = (root / "dist").glob("uploadsvc-*.whl")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)])
    site_packages = run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    # Appended after the venv's own site-packages: the wheel's uploadsvc wins
    # over the project's editable install, whose .pth is not read from here.
    (Path(site_packages) / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv / "bin"


def test_the_installed_wheel_carries_its_migrations(installed: Path, tmp_path: Path) -> None:
    package = run(
        [str(installed / "python"), "-c", "import uploadsvc; print(uploadsvc.__file__)"],
        cwd=tmp_path,
    ).stdout.strip()
    assert Path(package).is_relative_to(installed.parent), package
    assert (Path(package).parent / "migrations" / "versions" / HEAD_REVISION).is_file()

    database = tmp_path / "fresh.db"
    env = uploadsvc_env({"env": "development", "database_url": f"sqlite+aiosqlite:///{database}"})
    # The working directory has no alembic/ folder: only the package's migrations can be used.
    migrated = run([str(installed / "uploadsvc"), "migrate"], env=env, cwd=tmp_path)
    assert "database is up to date" in migrated.stdout

    with sqlite3.connect(database) as connection:
        (revision,) = connection.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert HEAD_REVISION.startswith(revision), (revision, HEAD_REVISION)
    assert "uploads" in tables

    version = run([str(installed / "uploadsvc"), "--version"], env=env, cwd=tmp_path)
    assert version.stdout.strip().startswith("uploadsvc 0.")
