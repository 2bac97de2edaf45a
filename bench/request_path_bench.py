"""The authenticated request path: what each API call costs beside /healthz.

    uv run python -m bench.request_path_bench            # writes its section of BENCHMARKS.md
    uv run python -m bench.request_path_bench --quick    # short rounds, prints only
    uv run python -m bench.request_path_bench --profile  # also py-spy the list route

One uvicorn worker (``bench/request_path_server.py``: the app as ``uploadsvc
serve`` runs it, plus a no-op and a naive request-url route) on a scratch
PostgreSQL database and LocalStack, loaded by wrk on loopback (one thread,
16 connections, keep-alive). Rounds are interleaved: every round runs every
route once, so a neighbour's load spreads over all of them alike; figures are
medians over rounds (min-max beside them), ratios are taken within a round.

Routes, with a valid token where they need one: ``/healthz``;
``GET /v1/files?limit=1``; ``GET /v1/files/{id}``;
``POST /v1/uploads/request-url`` (one insert each); ``POST
/v1/uploads/confirm`` of an upload already confirmed (its object present);
``GET /v1/files?limit=100`` with and without ``urls=true``; the no-op and
naive request-url routes.

In-process, it also measures how long ``urls=true`` holds the event loop for
the signing of 100 download URLs (the longest stall a ticker task sees).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.servers import (
    ServerProcess,
    free_loopback_port,
    spawn,
    uploadsvc_env,
    wait_until_answers,
)

from bench.common import REPO, localstack, s3_settings, scratch_database, settings, table
from bench.common import write_section as write_bench_section
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.resources import open_resources
from uploadsvc.security import Principal, mint_token

USER = "bench-user"
CONNECTIONS = 16
LIST_ITEMS = 150
PDF = b"%PDF-1.7\n" + b"0" * 1024
WRK = shutil.which("wrk") or "wrk"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str
    body: dict[str, Any] | None = None
    auth: bool = True


@dataclass
class Sample:
    rps: float
    p50_ms: float
    p99_ms: float


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)


def _upload_body() -> dict[str, Any]:
    return {"filename": "report.pdf", "content_type": "application/pdf", "size": 4096}


def routes(file_id: uuid.UUID, confirmed_key: str) -> list[Route]:
    return [
        Route("GET /healthz", "GET", "/healthz", auth=False),
        Route("GET /v1/files?limit=1", "GET", "/v1/files?limit=1"),
        Route("GET /v1/files/{id}", "GET", f"/v1/files/{file_id}"),
        Route("POST /v1/uploads/request-url", "POST", "/v1/uploads/request-url", _upload_body()),
        Route(
            "POST /v1/uploads/confirm (confirmed)",
            "POST",
            "/v1/uploads/confirm",
            {"file_key": confirmed_key},
        ),
        Route("GET /v1/files?limit=100", "GET", "/v1/files?limit=100"),
        Route("GET /v1/files?limit=100&urls=true", "GET", "/v1/files?limit=100&urls=true"),
        Route("POST /bench/noop (no-op request-url)", "POST", "/bench/noop", _upload_body()),
        Route("GET /bench/floor (one asyncpg query, no auth)", "GET", "/bench/floor", auth=False),
        Route("POST /bench/naive (naive request-url)", "POST", "/bench/naive", _upload_body()),
    ]


def _lua(route: Route, token: str) -> str:
    lines = [f'wrk.method = "{route.method}"']
    if route.auth:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    if route.body is not None:
        lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines.append(f"wrk.body = [[{json.dumps(route.body)}]]")
    return "\n".join(lines) + "\n"


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _duration_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Sample:
    if "Non-2xx or 3xx responses" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failed requests:\n{output}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)\s*$", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)\s*$", output, re.MULTILINE)
    if rps is None or p50 is None or p99 is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    return Sample(
        rps=float(rps.group(1)),
        p50_ms=_duration_ms(p50.group(1)),
        p99_ms=_duration_ms(p99.group(1)),
    )


def run_wrk(base_url: str, route: Route, token: str, seconds: float, workdir: Path) -> Sample:
    script = workdir / "route.lua"
    script.write_text(_lua(route, token))
    result = subprocess.run(
        [
            WRK,
            "-t1",
            f"-c{CONNECTIONS}",
            f"-d{seconds:g}s",
            "--latency",
            "-s",
            str(script),
            base_url + route.path,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    return parse_wrk(result.stdout)


async def seed(values: dict[str, Any]) -> tuple[uuid.UUID, str]:
    """Confirmed files for USER; the id of one, and the key of one whose object exists."""
    async with open_resources(settings(**values)) as resources:
        await resources.storage.initialize(cors_origins=[])
        now = dt.datetime.now(dt.UTC)
        rows = []
        for index in range(LIST_ITEMS):
            rows.append(
                {
                    "id": uuid.uuid4(),
                    "owner_id": USER,
                    "purpose": "attachment",
                    "file_key": f"uploads/{USER}/2026/05/09/{uuid.uuid4().hex}.pdf",
                    "filename": f"report {index}.pdf",
                    "content_type": "application/pdf",
                    "size_bytes": len(PDF),
                    "sha256": base64.b64encode(hashlib.sha256(PDF).digest()).decode(),
                    "status": UploadStatus.CONFIRMED,
                    "created_at": now - dt.timedelta(seconds=index),
                    "url_expires_at": now,
                    "confirmed_at": now,
                }
            )
        async with resources.session_factory() as session:
            await session.execute(Upload.__table__.insert(), rows)
            await session.commit()
        first = rows[0]
        await resources.storage.put_stream(
            first["file_key"], content_type="application/pdf", chunks=_one(PDF)
        )
        return first["id"], first["file_key"]


async def _one(data: bytes) -> Any:
    yield data


async def loop_stall_of_signing(values: dict[str, Any]) -> tuple[float, float]:
    """(ms the loop is held signing 100 download URLs, longest ticker stall in ms), medians."""
    from uploadsvc.services import files as service

    async with open_resources(settings(**values)) as resources:
        principal = Principal(user_id=USER)
        page = await service.list_files(
            resources.engine,
            resources.storage,
            resources.settings,
            principal=principal,
            cursor=None,
            limit=100,
        )
        sign = getattr(service, "add_download_urls", None)
        if sign is None:  # before download URLs in lists existed
            return float("nan"), float("nan")
        held: list[float] = []
        stalls: list[float] = []
        for _ in range(30):
            done = asyncio.Event()
            task = asyncio.create_task(_longest_stall(done))
            await asyncio.sleep(0)
            started = time.perf_counter()
            await sign(resources.storage, resources.settings, page)
            held.append((time.perf_counter() - started) * 1e3)
            done.set()
            stalls.append(await task * 1e3)
        return statistics.median(held), statistics.median(stalls)


_FLOOR_SQL = (
    "SELECT * FROM uploads WHERE owner_id = $1 AND status = 'confirmed' "
    "ORDER BY created_at DESC, id DESC LIMIT $2"
)


async def db_layer_costs(values: dict[str, Any], count: int = 2000) -> dict[str, float]:
    """CPU µs of this process per read of one list page (limit=1), layer by layer.

    Medians of 5 interleaved rounds: the page's statement run by SQLAlchemy
    (``connection.execute`` on an autocommit pooled connection, as the
    repository read before); the repository's read as the list route runs it
    (asyncpg itself on SQLAlchemy's pooled connection, values converted by the
    columns' types, rows as ``UploadRow``); asyncpg on a pool of its own
    (what no database layer can go below).
    """
    import asyncpg

    from uploadsvc.db import autocommit
    from uploadsvc.repository import uploads as repository

    async with open_resources(settings(**values)) as resources:
        engine = resources.engine
        page = repository._PAGES[0].statement

        async def sqlalchemy_execute() -> None:
            async with autocommit(engine) as connection:
                list(await connection.execute(page, {"owner_id": USER, "limit": 2}))

        async def repository_read() -> None:
            await repository.list_confirmed(engine, owner_id=USER, cursor=None, limit=1)

        dsn = values["database_url"].replace("postgresql+asyncpg://", "postgresql://")
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)

        async def asyncpg_alone() -> None:
            async with pool.acquire() as connection:
                await connection.fetch(_FLOOR_SQL, USER, 2)

        layers = {
            "SQLAlchemy Core execute, autocommit pooled connection (the read before)": (
                sqlalchemy_execute
            ),
            "the repository's read now (asyncpg on SQLAlchemy's pooled connection)": (
                repository_read
            ),
            "asyncpg alone (its own pool)": asyncpg_alone,
        }
        spent: dict[str, list[float]] = {name: [] for name in layers}
        try:
            for read in layers.values():
                for _ in range(100):
                    await read()
            for _ in range(5):
                for name, read in layers.items():
                    started = time.process_time()
                    for _ in range(count):
                        await read()
                    spent[name].append((time.process_time() - started) / count * 1e6)
        finally:
            await pool.close()
        return {name: statistics.median(times) for name, times in spent.items()}


async def _longest_stall(done: asyncio.Event) -> float:
    """The longest time (s) this task waited for the event loop, until ``done``."""
    longest = 0.0
    last = time.perf_counter()
    while not done.is_set():
        await asyncio.sleep(0)
        now = time.perf_counter()
        longest = max(longest, now - last)
        last = now
    return longest


@contextlib.contextmanager
def bench_server(values: dict[str, Any], workdir: Path, *options: str) -> Any:
    port = free_loopback_port()
    env = uploadsvc_env({k: str(v) for k, v in values.items()})
    env["UPLOADSVC_JWT_SECRET"] = settings().effective_jwt_secret or ""
    log_path = workdir / "server.log"
    process = spawn(
        [sys.executable, "-m", "bench.request_path_server", "--port", str(port), *options],
        env={**env, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        log_path=log_path,
    )
    server = ServerProcess("request-path bench server", port, process, log_path)
    try:
        wait_until_answers(server, "/readyz")
        yield server
    finally:
        server.stop()


def profile(
    server: ServerProcess, route: Route, token: str, workdir: Path, keep: Path | None
) -> str:
    """py-spy's top functions (by own time) while wrk loads ``route``."""
    out = workdir / "profile.txt"
    (workdir / "route.lua").write_text(_lua(route, token))
    load = subprocess.Popen(
        [
            WRK,
            "-t1",
            f"-c{CONNECTIONS}",
            "-d12s",
            "-s",
            str(workdir / "route.lua"),
            server.base_url + route.path,
        ],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(1)
    subprocess.run(
        [
            shutil.which("py-spy") or "py-spy",
            "record",
            "--pid",
            str(server.pid),
            "--duration",
            "8",
            "--format",
            "raw",
            "--output",
            str(out),
            # C frames too: the socket writes and the garbage collector are
            # where much of the time goes, and only native frames show them.
            "--native",
        ],
        check=True,
        capture_output=True,
    )
    load.wait()
    raw = out.read_text()
    if keep is not None:
        keep.write_text(raw)
    return summarize_profile(raw)


def summarize_profile(raw: str, top: int = 14) -> str:
    """Share of the event loop thread's samples in which each cost centre appears (inclusive)."""
    centres = {
        "FastAPI/Starlette routing (match)": ("_match", "matches (", "routing.py:matches"),
        "dependency solving (solve_dependencies)": ("solve_dependencies",),
        "token verification (security.py)": ("security.py",),
        "SQLAlchemy ORM/compile": ("sqlalchemy/orm", "sqlalchemy/sql/compiler", "cache_key"),
        "SQLAlchemy execution, session (engine/base, orm/session)": (
            "sqlalchemy/orm/session",
            "sqlalchemy/engine/base",
        ),
        "asyncpg": ("asyncpg",),
        "response serialisation (pydantic)": ("serialize_response", "_prepare_response_content"),
        "sync dependencies in the thread pool": ("run_in_threadpool",),
        "pool checkout (pre-ping, connect)": (
            "_async_ping",
            "Pool.connect",
            "asyncpg/connect_utils",
        ),
        "access log": ("logging/__init__",),
        "presigning": ("s3_presign",),
        "socket writes (write(2), waiting for a CPU included)": ("write (libc",),
        "garbage collection": ("gc_collect_main",),
    }
    total = 0
    counts = dict.fromkeys(centres, 0)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        if "WorkerThread.run" in stack:
            continue  # an idle thread-pool thread waiting for work
        count = int(count_text)
        total += count
        for name, needles in centres.items():
            if any(needle in stack for needle in needles):
                counts[name] += count
    rows = sorted(counts.items(), key=lambda item: -item[1])[:top]
    return table(
        ["cost centre (inclusive)", "share of samples"],
        [[name, f"{100 * count / max(total, 1):.0f}%"] for name, count in rows],
    )


def _fmt(values: list[float], digits: int = 0) -> str:
    return (
        f"{statistics.median(values):,.{digits}f} "
        f"({min(values):,.{digits}f}-{max(values):,.{digits}f})"
    )


def route_table(results: dict[str, Series]) -> str:
    """requests/s, the ratio to /healthz of the same round, p50, p99 of every route run."""
    health = results["GET /healthz"].samples
    rows = []
    for name, series in results.items():
        rps = [s.rps for s in series.samples]
        ratio = [s.rps / h.rps for s, h in zip(series.samples, health, strict=True)]
        p50 = [s.p50_ms for s in series.samples]
        p99 = [s.p99_ms for s in series.samples]
        tail = [s.p99_ms / s.p50_ms for s in series.samples]
        rows.append(
            [
                name,
                _fmt(rps),
                f"{statistics.median(ratio):.2f}",
                _fmt(p50, 2),
                _fmt(p99, 2),
                f"{statistics.median(tail):.1f}",
            ]
        )
    return table(["route", "requests/s", "× /healthz", "p50 ms", "p99 ms", "p99/p50"], rows)


def report(
    results: dict[str, Series],
    rounds: int,
    seconds: float,
    stall: tuple[float, float],
    load: tuple[str, str],
) -> str:
    request_url = "POST /v1/uploads/request-url"
    listed = "GET /v1/files?limit=1"
    floor = "GET /bench/floor (one asyncpg query, no auth)"

    def ratio(a: str, b: str) -> float:
        pairs = zip(results[a].samples, results[b].samples, strict=True)
        return statistics.median([x.rps / y.rps for x, y in pairs])

    def verdict(value: float, target: float, at_least: bool = True) -> str:
        holds = value >= target if at_least else value <= target
        return f"{value:.2f} (target {'≥' if at_least else '≤'} {target:g}: " + (
            "**holds**)" if holds else "**misses**)"
        )

    tails = []
    for name in ("GET /v1/files?limit=1", "GET /v1/files/{id}", request_url):
        tail = statistics.median(s.p99_ms / s.p50_ms for s in results[name].samples)
        tails.append(f"{name} {verdict(tail, 3, at_least=False)}")
    targets = [
        f"- list (limit=1) / /healthz: {verdict(ratio(listed, 'GET /healthz'), 0.4)}",
        f"- request-url / list: {verdict(ratio(request_url, listed), 0.6)}",
        f"- request-url / no-op request-url: "
        f"{verdict(ratio(request_url, 'POST /bench/noop (no-op request-url)'), 0.45)}",
        f"- request-url / naive request-url: "
        f"{verdict(ratio(request_url, 'POST /bench/naive (naive request-url)'), 4)}",
        f"- p99/p50: {'; '.join(tails)}",
        f"- ms the event loop is held signing the 100 download URLs of `urls=true`: "
        f"{verdict(stall[0], 2, at_least=False)} (longest stall a ticker task saw: "
        f"{stall[1]:.2f} ms; medians of 30, in-process)",
        f"- the floor (one asyncpg query under the same app and server, no token, "
        f"constant answer) / /healthz: {ratio(floor, 'GET /healthz'):.2f}; "
        f"list / floor: {ratio(listed, floor):.2f}",
    ]
    lines = [
        "## The request path (one worker, PostgreSQL, LocalStack)",
        "",
        "`uv run python -m bench.request_path_bench` (wrk -t1 -c16 on loopback, "
        f"{rounds} interleaved rounds of {seconds:g} s per route; median (min-max); "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, shared with other work; "
        f"1-minute load average {load[0]} before, {load[1]} after).",
        "",
        route_table(results),
        "",
        *targets,
        f"- list of 100 with URLs / without: "
        f"{ratio('GET /v1/files?limit=100&urls=true', 'GET /v1/files?limit=100'):.2f}",
    ]
    return "\n".join(lines)


def _load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


async def main_async(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed (apt-get install -y wrk)")
    rounds = 2 if args.quick else args.rounds
    seconds = 2.0 if args.quick else args.seconds
    load_before = _load_average()
    with tempfile.TemporaryDirectory() as tmp, localstack() as s3:
        workdir = Path(tmp)
        async with scratch_database() as database_url:
            values = {
                **s3_settings(s3),
                "database_url": database_url,
                # One user sends every request: a limit that never refuses one,
                # so that the limiter's own cost is in the figures (in memory,
                # as without Redis).
                "rate_limit_upload_urls": "100000000/minute",
                "rate_limit_direct_uploads": "100000000/minute",
            }
            file_id, confirmed_key = await seed(values)
            stall = await loop_stall_of_signing(values)
            layers = await db_layer_costs(values) if not args.routes else {}
            token = mint_token(settings(), sub=USER, ttl_seconds=3600)
            chosen = routes(file_id, confirmed_key)
            if args.routes:
                chosen = [chosen[int(index)] for index in args.routes.split(",")]
            results = {route.name: Series() for route in chosen}
            options = ("--loop", args.loop, "--http", args.http)
            with bench_server(values, workdir, *options) as server:
                for route in chosen:  # warm-up: connections, caches, JIT-less Python's first calls
                    run_wrk(server.base_url, route, token, 1, workdir)
                for number in range(rounds):
                    for route in chosen:
                        sample = run_wrk(server.base_url, route, token, seconds, workdir)
                        results[route.name].samples.append(sample)
                    print(f"round {number + 1}/{rounds} done", flush=True)
                profiled = ""
                if args.profile:
                    profiled = profile(server, chosen[1], token, workdir, args.keep_profile)
    if args.routes:  # a subset: its table only, BENCHMARKS.md untouched
        print(f"load average {load_before} before, {_load_average()} after")
        print(route_table(results))
        return
    body = report(results, rounds, seconds, stall, (load_before, _load_average()))
    if profiled:
        body += (
            "\n\nWhere `GET /v1/files?limit=1` spends its time (py-spy --native, 8 s under "
            "load, every thread but idle thread-pool ones; a sample counts for each centre "
            "on its stack):\n\n"
        )
        body += profiled
    body += "\n\nCPU of the server process per read of one list page (limit=1), in-process, "
    body += "no HTTP (`db_layer_costs`, medians of 5 interleaved rounds of 2,000 reads):\n\n"
    body += table(["layer", "CPU µs per read"], [[k, f"{v:.0f}"] for k, v in layers.items()])
    print(body)
    if not args.quick:
        write_bench_section("request-path", body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--keep-profile", type=Path, help="write py-spy's raw stacks here")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--routes", help="comma-separated indexes of the routes to run")
    parser.add_argument("--loop", default="auto", help="uvicorn --loop (auto: uvloop)")
    parser.add_argument("--http", default="auto", help="uvicorn --http (auto: httptools)")
    parser.add_argument("--seconds", type=float, default=5.0)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
