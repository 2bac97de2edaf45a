"""The README's shell blocks, run as they are written against ``uploadsvc dev``.

The commands come out of README.md itself, so they cannot drift from what
the suite runs. Two things are the test's: ``BASE`` points at the dev
server's port, and ``HOME`` is an empty folder whose ``.local/bin/uv`` runs
``uv run CMD`` as CMD from this environment (where `make dev` would have
installed uv). Every ``# → ...`` comment under a command is checked:

- ``# → 201`` (a status, maybe followed by words): the next status the
  script printed (``-w '%{http_code}\\n'``), in order;
- ``# → {...`` or ``# → [...``: a sketch of a JSON body, not compared;
- anything else: a line the script printed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.devserver import DevServer, clean_env, running_dev_server
from tests.support import REPO_ROOT

README = REPO_ROOT / "README.md"
# The sections whose ```sh blocks talk to the service, in the order a reader follows them.
SECTIONS = [
    "The upload flow with curl",
    "Large files: multipart uploads",
    "Direct uploads",
    "Event imports",
]
README_BASE = "BASE=http://127.0.0.1:8000"
SCRIPT_TIMEOUT_SECONDS = 300
IMPORT_TIMEOUT_SECONDS = 60

_HEADING = re.compile(r"^(#{2,6}) (.+?)\s*$")
_FENCE = re.compile(r"^```(\w*)\s*$")
_ARROW = re.compile(r"#\s*→\s*(.*)$")
_STATUS = re.compile(r"^(\d{3})\b")

pytestmark = pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("openssl") is None,
    reason="the README's commands need curl and openssl",
)


@dataclass
class Expectations:
    statuses: list[str]
    lines: list[str]


def shell_blocks(markdown: str, sections: list[str]) -> dict[str, list[str]]:
    """The ```sh blocks under each named heading (up to the next heading of any level)."""
    found: dict[str, list[str]] = {name: [] for name in sections}
    current: str | None = None
    language: str | None = None  # inside a fenced block: its language ("" for none)
    block: list[str] = []
    for line in markdown.splitlines():
        fence = _FENCE.match(line)
        if language is not None:
            if fence and not fence.group(1):
                if language == "sh" and current is not None:
                    found[current].append("\n".join(block))
                language = None
            else:
                block.append(line)
            continue
        if fence:
            language, block = fence.group(1), []
            continue
        heading = _HEADING.match(line)
        if heading:
            current = heading.group(2) if heading.group(2) in found else None
    return found


def expectations(script: str) -> Expectations:
    statuses: list[str] = []
    lines: list[str] = []
    for line in script.splitlines():
        arrow = _ARROW.search(line)
        if not arrow or not line.lstrip().startswith("#"):
            continue
        said = arrow.group(1).strip()
        status = _STATUS.match(said)
        if status:
            statuses.append(status.group(1))
        elif not said.startswith(("{", "[")):
            lines.append(said)
    return Expectations(statuses, lines)


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    with running_dev_server(tmp_path_factory.mktemp("readme-dev")) as server:
        yield server


def test_readme_sections_have_their_shell_blocks() -> None:
    blocks = shell_blocks(README.read_text(), SECTIONS)
    for name in SECTIONS:
        assert blocks[name], f"README.md has no ```sh block under {name!r}"
    first = blocks[SECTIONS[0]][0]
    assert first.count(README_BASE) == 1
    # Every status a command prints has its comment, and the other way round.
    script = "\n\n".join(block for name in SECTIONS for block in blocks[name])
    assert script.count("%{http_code}") == len(expectations(script).statuses)


def test_readme_commands_print_what_the_readme_says(dev: DevServer, tmp_path: Path) -> None:
    blocks = shell_blocks(README.read_text(), SECTIONS)
    script = "\n\n".join(block for name in SECTIONS for block in blocks[name])
    want = expectations(script)
    assert want.statuses, "the README shows no status"

    home = tmp_path / "home"
    shim = home / ".local" / "bin" / "uv"
    shim.parent.mkdir(parents=True)
    shim.write_text(
        '#!/bin/sh\n[ "$1" = run ] || { echo "test shim: only uv run" >&2; exit 2; }\n'
        'shift\nexec "$@"\n'
    )
    shim.chmod(0o755)
    workdir = tmp_path / "clone"
    workdir.mkdir()
    (workdir / "walkthrough.sh").write_text(
        "set -euo pipefail\n" + script.replace(README_BASE, f"BASE={dev.base_url}")
    )
    env = clean_env()
    env["HOME"] = str(home)
    # `uploadsvc` and the Python of this environment, as `uv run` would find them.
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    ran = subprocess.run(
        ["bash", "walkthrough.sh"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=SCRIPT_TIMEOUT_SECONDS,
        check=False,
    )
    report = f"stdout:\n{ran.stdout}\nstderr:\n{ran.stderr}\nserver:\n{dev.log()[-3000:]}"
    assert ran.returncode == 0, report
    printed = ran.stdout.splitlines()
    statuses = [line for line in printed if re.fullmatch(r"\d{3}", line)]
    assert statuses == want.statuses, report
    for line in want.lines:
        assert line in printed, f"README says {line!r}\n{report}"

    # The import the README starts finishes, with the example archive's event.
    task_url = json.loads((workdir / "import.json").read_text())["task_url"]
    token = subprocess.run(
        ["uploadsvc", "token", "--sub", "dev-user"],
        cwd=workdir,
        # As the README mints its token: every command but `dev` is production.
        env={**env, "UPLOADSVC_ENV": "development"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deadline = time.monotonic() + IMPORT_TIMEOUT_SECONDS
    while True:
        task = httpx.get(
            f"{dev.base_url}{task_url}", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).json()
        if task["state"] in ("SUCCESS", "FAILURE") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert task["state"] == "SUCCESS", task
    assert task["result"]["warnings"] == []
