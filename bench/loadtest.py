"""The load run (`make loadtest`): many clients through the whole presigned flow, then a check.

One ``uploadsvc serve`` worker on a scratch PostgreSQL database and
LocalStack. Each client loops for the run's length: request-url → PUT to
S3 → confirm → download URL → GET the bytes, with random printable text
files (1–64 KiB). Afterwards every confirmed row's object is read back
(exists, size, SHA-256) and the pending rows are counted. The figures go to
RELIABILITY.md ("Load"), between its markers.

    uv run python -m bench.loadtest --clients 200 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import os
import random
import statistics
import string
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from tests.support.servers import (
    free_loopback_port,
    run_cli,
    start_uploadsvc,
    uploadsvc_env,
)

from bench.common import REPO, localstack, s3_settings, scratch_database
from uploadsvc.config import Settings
from uploadsvc.security import mint_token

SECRET = "load-secret-0123456789abcdef0123456789"  # noqa: S105 - loopback, development
STEPS = ("request-url", "put", "confirm", "download", "get")
_PRINTABLE = (string.ascii_letters + string.digits + " .,;:-\n").encode()


@dataclass
class Figures:
    latencies: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STEPS})
    errors: Counter[str] = field(default_factory=Counter)
    flows: int = 0
    requests: int = 0
    confirmed: dict[str, tuple[int, str]] = field(default_factory=dict)  # key → size, sha


# Random bytes mapped onto printable characters: fast enough that the client's
# own loop does not add to the latencies it measures.
_TO_PRINTABLE = bytes(_PRINTABLE[i % len(_PRINTABLE)] for i in range(256))


def _text_file(rng: random.Random) -> bytes:
    return rng.randbytes(rng.randint(1024, 64 * 1024)).translate(_TO_PRINTABLE)


async def _step(
    figures: Figures, name: str, request: asyncio.Future[httpx.Response] | object, ok: int
) -> httpx.Response | None:
    started = time.monotonic()
    try:
        response: httpx.Response = await request  # type: ignore[misc]
    except httpx.HTTPError as exc:
        figures.errors[f"{name}: {type(exc).__name__}"] += 1
        return None
    finally:
        figures.requests += 1
    figures.latencies[name].append(time.monotonic() - started)
    if response.status_code != ok:
        code = (
            response.json().get("code", "")
            if response.headers.get("content-type", "").endswith("json")
            else ""
        )
        figures.errors[f"{name}: {response.status_code} {code}".rstrip()] += 1
        return None
    return response


async def _client(base: str, token: str, deadline: float, figures: Figures, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - file contents, not secrets
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        while time.monotonic() < deadline:
            body = _text_file(rng)
            digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
            declared = {
                "filename": "load.txt",
                "content_type": "text/plain",
                "size": len(body),
                "sha256": digest,
            }
            grant = await _step(
                figures,
                "request-url",
                client.post("/v1/uploads/request-url", json=declared, headers=auth),
                201,
            )
            if grant is None:
                continue
            granted = grant.json()
            put = await _step(
                figures,
                "put",
                client.put(granted["upload_url"], content=body, headers=granted["headers"]),
                200,
            )
            if put is None:
                continue
            confirm = await _step(
                figures,
                "confirm",
                client.post(
                    "/v1/uploads/confirm", json={"file_key": granted["file_key"]}, headers=auth
                ),
                200,
            )
            if confirm is None:
                continue
            figures.confirmed[granted["file_key"]] = (len(body), digest)
            file_id = confirm.json()["file_id"]
            download = await _step(
                figures, "download", client.get(f"/v1/files/{file_id}/download", headers=auth), 200
            )
            if download is None:
                continue
            got = await _step(figures, "get", client.get(download.json()["download_url"]), 200)
            if got is not None and got.content != body:
                figures.errors["get: other bytes"] += 1
            figures.flows += 1


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its waited-for children (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


async def _verify(database_url: str, base_settings: Settings, figures: Figures) -> dict[str, int]:
    """Every confirmed row's object: exists, size, SHA-256; and the rows left pending."""
    from uploadsvc.storage import open_storage

    engine = create_async_engine(database_url)
    async with engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT file_key, size_bytes, sha256 FROM uploads WHERE status = 'confirmed'")
            )
        ).all()
        pending = int(
            await connection.scalar(text("SELECT count(*) FROM uploads WHERE status = 'pending'"))
            or 0
        )
    await engine.dispose()
    bad = 0
    async with open_storage(base_settings) as storage:
        for key, size, sha in rows:
            data = b"".join([chunk async for chunk in storage.read_chunks(key)])
            actual = base64.b64encode(hashlib.sha256(data).digest()).decode()
            if (
                len(data) != size
                or actual != sha
                or figures.confirmed.get(key, (size, sha)) != (size, sha)
            ):
                bad += 1
    lost = len(set(figures.confirmed) - {key for key, _, _ in rows})
    return {
        "confirmed rows": len(rows),
        "bad objects": bad,
        "lost uploads": lost,
        "pending rows": pending,
    }


def _percentile(values: list[float], q: float) -> str:
    if not values:
        return "–"
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.0f}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--no-write", action="store_true", help="print only")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting, e.g. database_pool_size=40 (repeatable)",
    )
    args = parser.parse_args()
    with localstack() as s3, tempfile.TemporaryDirectory() as workdir:
        async with scratch_database() as database_url:
            port = free_loopback_port()
            values = {
                "env": "development",
                "jwt_secret": SECRET,
                "database_url": database_url,
                "public_base_url": f"http://127.0.0.1:{port}",
                **{k: str(v) for k, v in s3_settings(s3).items()},
                **dict(setting.split("=", 1) for setting in args.setting),
            }
            env = uploadsvc_env(values)
            run_cli(["storage", "init"], env=env, cwd=Path(workdir))
            base_settings = Settings(_env_file=None, **values)
            api = start_uploadsvc("serve", port=port, env=env, workdir=Path(workdir))
            try:
                cpu_before = {
                    "api": _cpu_seconds(api.process.pid),
                    "localstack": _cpu_seconds(s3.process.pid),
                }
                client_before = time.process_time()
                figures = Figures()
                started = time.monotonic()
                deadline = started + args.seconds
                await asyncio.gather(
                    *(
                        _client(
                            api.base_url,
                            mint_token(base_settings, sub=f"load-{i}"),
                            deadline,
                            figures,
                            seed=i,
                        )
                        for i in range(args.clients)
                    )
                )
                elapsed = time.monotonic() - started
                cpu = {
                    name: _cpu_seconds(pid) - cpu_before[name]
                    for name, pid in (("api", api.process.pid), ("localstack", s3.process.pid))
                }
                cpu["load client"] = time.process_time() - client_before
            finally:
                api.stop()
            checked = await _verify(database_url, base_settings, figures)
    report = _report(args, figures, elapsed, cpu, checked)
    print(report)
    if not args.no_write:
        _write(report)


def _report(
    args: argparse.Namespace,
    figures: Figures,
    elapsed: float,
    cpu: dict[str, float],
    checked: dict[str, int],
) -> str:
    lines = [
        f"`uv run python -m bench.loadtest --clients {args.clients} --seconds {args.seconds:g}"
        + "".join(f" --setting {setting}" for setting in args.setting)
        + "`"
        f" ({elapsed:.0f} s including the last flows):",
        "",
        f"- flows completed: {figures.flows}; requests: {figures.requests} "
        f"({figures.requests / elapsed:.0f}/s)",
        f"- errors: {dict(figures.errors) or 'none'}",
        "- after the run: " + ", ".join(f"{name} {count}" for name, count in checked.items()),
        "- CPU seconds: " + ", ".join(f"{name} {seconds:.1f}" for name, seconds in cpu.items()),
        "",
        "| step | requests | p50 ms | p99 ms | mean ms |",
        "|---|---|---|---|---|",
    ]
    for step in STEPS:
        values = figures.latencies[step]
        mean = f"{statistics.mean(values) * 1000:.0f}" if values else "–"
        lines.append(
            f"| {step} | {len(values)} | {_percentile(values, 0.5)} | "
            f"{_percentile(values, 0.99)} | {mean} |"
        )
    return "\n".join(lines)


def _write(report: str) -> None:
    path = REPO / "RELIABILITY.md"
    begin, end = "<!-- loadtest:begin -->", "<!-- loadtest:end -->"
    current = path.read_text()
    head, rest = current.split(begin, 1)
    path.write_text(head + begin + "\n" + report + "\n" + end + rest.split(end, 1)[1])


if __name__ == "__main__":
    asyncio.run(main())
