"""Streamed direct uploads, side by side with their baselines, in one run.

    uv run python -m bench.direct_bench            # 256 MiB and 1 GiB, 3 rounds (~10 min)
    uv run python -m bench.direct_bench --quick    # 32 MiB and 128 MiB, 1 round, nothing written
    uv run python -m bench.direct_bench --quick --variants a,c,f   # a subset, nothing written

Each server is its own uvicorn process on 127.0.0.1 (one worker), started
here and stopped at the end (``bench/direct_server.py``):

(a) a bare ``request.stream()`` drain that only hashes (SHA-256);
(b) the common tutorial handler: ``file: UploadFile``, ``await file.read()``,
    one aioboto3 ``put_object`` to LocalStack;
(c) uploadsvc ``POST /v1/uploads/direct`` with a storage that discards the
    bytes (NullStorage, swapped in after the lifespan started);
(d) uploadsvc ``POST /v1/uploads/direct`` to LocalStack (``storage_backend="s3"``);
(e) no server: this process uploads the same bytes straight to LocalStack with
    aioboto3 ``create_multipart_upload`` / ``upload_part`` (8 MiB, one after the
    other) / ``complete_multipart_upload``;
(f) uploadsvc ``PUT /v1/uploads/direct`` (the raw-body route) on the server of
    (c): the same file bytes as the body, no multipart framing.

The client (httpx) streams the same ``multipart/form-data`` body to (a)-(d)
from a generator of 1 MiB chunks (text, so the magic-byte check sees
text/plain). All servers stay up for the whole run and the rounds go
a, b, c, d, e, f, a, b, ... so that a slow moment of the machine hits every
variant alike; each figure is the median over the rounds, and each ratio is
taken between figures of the same run.

Measured per upload: throughput (body bytes / wall time of the request);
the server's peak VmRSS (sampled from /proc every 20 ms) minus its idle
VmRSS after a warm-up upload; CPU seconds of the server, LocalStack and this
client; the server's event-loop lag; and, from a separate process
(``bench/direct_probe.py``), ``GET /healthz`` every 10 ms on its own
connection (for (e) it calls the idle drain server, so that every variant
runs with the same background load), keeping the requests that started
while the upload ran. Before each upload the run waits for the machine to
be quiet; an upload disturbed by other processes is measured again.

``--profile DIR`` runs (a), (c) and (d) under cProfile (stats in DIR, read
them with ``python -m pstats``); the figures are then not representative
and nothing is written to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aioboto3
import httpx

from bench.common import REPO, localstack, settings, table, write_section
from bench.direct_server import BUCKET, S3_CREDENTIALS
from uploadsvc.security import mint_token
from uploadsvc.storage.s3 import STREAM_PART_SIZE

MiB = 2**20
CHUNK = MiB
PART = 8 * MiB
# The targets (BENCHMARKS.md, "Direct uploads").
RATIO_TARGET = 0.8
RSS_BOUND_MIB = 2 * STREAM_PART_SIZE / MiB + 8
P99_BOUND_MS = 20.0
# "Not at all between 256 MiB and 1 GiB", up to what sampling RSS every 20 ms can tell.
FLAT_TOLERANCE_MIB = 2.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
BOUNDARY = os.urandom(16).hex()  # like httpx: 32 random hex digits
TEXT = b"All work and no play makes Jack a dull boy.\n"
BLOCK = (TEXT * (CHUNK // len(TEXT) + 1))[:CHUNK]

A, B, C, D, E, F = "a", "b", "c", "d", "e", "f"
VARIANTS = (A, B, C, D, E, F)
LABELS = {
    A: "a: drain + hash",
    B: "b: tutorial UploadFile + put_object",
    C: "c: uploadsvc POST multipart → null sink",
    D: "d: uploadsvc POST multipart → S3",
    E: "e: plain client multipart → S3",
    F: "f: uploadsvc PUT raw body → null sink",
}
# The server process of each variant; (f) is the same process as (c), another route.
MODES = {A: "drain", B: "tutorial", C: "null", D: "s3"}
SERVER_OF = {A: A, B: B, C: C, D: D, F: C}

# An upload during which other processes used more than this share of one core
# (another session's tests, say) is measured again, up to MAX_ATTEMPTS times in
# all and MAX_RETRIES times per run of the benchmark; the least disturbed is kept.
# Server CPU seconds per GiB are reported too: they hardly depend on who else
# runs, unlike the throughput.
FOREIGN_CPU_LIMIT = 0.3
MAX_ATTEMPTS = 4
MAX_RETRIES = 30


# --- /proc -------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int, *, main_thread_only: bool = False) -> float:
    """User + system CPU of a process (all its threads), or of its main thread."""
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread_only else f"/proc/{pid}/stat"
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds the machine's cores spent running processes, or stolen by the host.

    From the ``cpu`` line of /proc/stat; interrupt and softirq time are left out:
    the kernel's loopback networking runs there, in proportion to the traffic of
    the upload itself, and no process is charged for it.
    """
    with open("/proc/stat") as stat:
        values = [int(v) for v in stat.readline().split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = values[:8]
    return (user + nice + system + steal) / CLK_TCK


def process_cpu_table() -> dict[int, tuple[str, float]]:
    """Every process's name and CPU seconds (to name what else ran during an upload)."""
    found: dict[int, tuple[str, float]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            with open(f"/proc/{entry.name}/stat") as stat:
                text = stat.read()
            name = text[text.index("(") + 1 : text.rindex(")")]
            fields = text.rsplit(")", 1)[1].split()
            found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return found


class RssSampler:
    """The peak VmRSS of a process, sampled every 20 ms from a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_kib(pid)
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            self.samples += 1
            self._stop.wait(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.pid))


# --- processes ----------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Server:
    """One ``bench.direct_server`` process; stopped by :meth:`stop` (idempotent)."""

    def __init__(
        self, mode: str, work: Path, endpoint: str | None, profile: Path | None = None
    ) -> None:
        self.mode = mode
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        data_dir = work / mode
        data_dir.mkdir()
        self.log_path = work / f"{mode}.log"
        args = [sys.executable, "-m", "bench.direct_server", mode]
        args += ["--port", str(self.port), "--data-dir", str(data_dir), "--bucket", BUCKET]
        if endpoint is not None:
            args += ["--endpoint", endpoint]
        if profile is not None:
            args += ["--profile", str(profile)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        self.idle_kib = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def upload_path(self) -> str:
        return "/upload" if self.mode in ("drain", "tutorial") else "/v1/uploads/direct"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.mode} server exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.mode} server did not start:\n{self.log_tail()}")

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        stop_process(self.process)


class Probe:
    """``bench.direct_probe`` against one server, for the length of one upload."""

    def __init__(self, base: str, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.direct_probe", base, str(out)], cwd=REPO
        )

    async def wait_running(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("the /healthz probe exited")
            if self.out.exists() and self.out.stat().st_size > 0:
                await asyncio.sleep(0.2)
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the /healthz probe did not start")

    def stop(self) -> None:
        stop_process(self.process)

    def latencies(self, start: float, end: float) -> list[float]:
        """Latencies (ms) of the requests that started between ``start`` and ``end``."""
        kept = []
        for line in self.out.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 2 and start <= float(fields[0]) <= end:
                kept.append(float(fields[1]))
        return kept


# --- one measurement -----------------------------------------------------------------


@dataclass
class Run:
    mib_s: float
    seconds: float
    gib: float
    server_cpu: float | None = None  # CPU seconds
    server_loop_cpu: float | None = None  # CPU seconds of its event-loop thread
    storage_cpu: float | None = None  # LocalStack's CPU seconds
    client_cpu: float = 0.0  # this process (client and samplers)
    foreign_cpu: float = 0.0  # every other process of the machine
    rss_growth_mib: float | None = None
    rss_retained_mib: float | None = None
    latencies: list[float] = field(default_factory=list)
    # The server's event-loop lag monitor (bench/direct_server.py): ms late.
    loop_lag: dict[str, float] = field(default_factory=dict)
    # The other processes that used the most CPU meanwhile, and the attempt number.
    top_others: list[str] = field(default_factory=list)
    attempt: int = 1


def multipart_body(size: int) -> tuple[AsyncIterator[bytes], int]:
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    async def body() -> AsyncIterator[bytes]:
        yield head
        sent = 0
        while sent < size:
            piece = BLOCK if size - sent >= CHUNK else BLOCK[: size - sent]
            sent += len(piece)
            yield piece
        yield tail

    return body(), len(head) + size + len(tail)


def raw_body(size: int) -> tuple[AsyncIterator[bytes], int]:
    async def body() -> AsyncIterator[bytes]:
        sent = 0
        while sent < size:
            piece = BLOCK if size - sent >= CHUNK else BLOCK[: size - sent]
            sent += len(piece)
            yield piece

    return body(), size


class Meter:
    """CPU of the processes involved and of the whole machine, around one upload."""

    def __init__(self, named: dict[str, int | None], ours: set[int]) -> None:
        self.named = {name: pid for name, pid in named.items() if pid is not None}
        # Every process this benchmark started (servers, probe, LocalStack).
        self.ours = ours

    def __enter__(self) -> Meter:
        self.processes = process_cpu_table()
        self.start = self._snapshot()
        return self

    def __exit__(self, *_: object) -> None:
        end = self._snapshot()
        self.used = {name: end[name] - self.start[name] for name in end}
        after = process_cpu_table()
        others = [
            (cpu - self.processes[pid][1], name)
            for pid, (name, cpu) in after.items()
            if pid in self.processes and pid not in self.ours and pid != os.getpid()
        ]
        self.top_others = [
            f"{name} {seconds:.2f} s"
            for seconds, name in sorted(others, reverse=True)[:3]
            if seconds
        ]

    def _snapshot(self) -> dict[str, float]:
        values = {name: cpu_seconds(pid) for name, pid in self.named.items()}
        if "server" in self.named:
            # The thread that runs the event loop: the critical path of a server
            # that hashes in other threads.
            values["server_loop"] = cpu_seconds(self.named["server"], main_thread_only=True)
        values["client"] = time.process_time()
        values["ours"] = values["client"] + sum(cpu_seconds(pid) for pid in self.ours)
        values["machine"] = machine_busy_seconds()
        return values

    def fill(self, run: Run) -> None:
        run.server_cpu = self.used.get("server")
        run.server_loop_cpu = self.used.get("server_loop")
        run.storage_cpu = self.used.get("storage")
        run.client_cpu = self.used["client"]
        run.foreign_cpu = max(0.0, self.used["machine"] - self.used["ours"])
        run.top_others = self.top_others


@dataclass
class Bench:
    work: Path
    storage_pid: int
    server_pids: set[int]
    auth: dict[str, str]
    s3: Any
    probe_base: str = ""
    probe_count: int = 0

    def meter(self, probe: Probe, server: int | None, storage: int | None) -> Meter:
        ours = {*self.server_pids, self.storage_pid, probe.process.pid}
        return Meter({"server": server, "storage": storage}, ours)

    def request(self, server: Server, size: int, *, raw: bool) -> dict[str, Any]:
        """httpx.request() arguments: the multipart form, or (raw) the PUT route's bare body."""
        auth = {} if server.mode in ("drain", "tutorial") else self.auth
        if raw:
            body, length = raw_body(size)
            return {
                "method": "PUT",
                "url": server.base + "/v1/uploads/direct?filename=big.txt",
                "content": body,
                "headers": {**auth, "Content-Type": "text/plain", "Content-Length": str(length)},
            }
        body, length = multipart_body(size)
        return {
            "method": "POST",
            "url": server.base + server.upload_path,
            "content": body,
            "headers": {
                **auth,
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                "Content-Length": str(length),
            },
        }

    @contextlib.asynccontextmanager
    async def probe(self, base: str) -> AsyncIterator[Probe]:
        self.probe_count += 1
        probe = Probe(base, self.work / f"probe-{self.probe_count}.txt")
        try:
            await probe.wait_running()
            yield probe
        finally:
            probe.stop()

    async def upload(self, server: Server, size: int, raw: bool = False) -> Run:
        storage = self.storage_pid if server.mode in ("tutorial", "s3") else None
        async with self.probe(server.base) as probe:
            meter = self.meter(probe, server.pid, storage)
            async with httpx.AsyncClient(timeout=600) as client:
                await client.post(server.base + "/bench/lag")
                with meter, RssSampler(server.pid) as sampler:
                    start = time.monotonic()
                    response = await client.request(**self.request(server, size, raw=raw))
                    end = time.monotonic()
                loop_lag = (await client.post(server.base + "/bench/lag")).json()
        if response.status_code not in (200, 201):
            raise RuntimeError(f"{server.mode}: {response.status_code} {response.text[:500]}")
        if server.mode == "s3":
            await self.s3.delete_object(Bucket=BUCKET, Key=response.json()["file_key"])
        run = Run(mib_s=size / MiB / (end - start), seconds=end - start, gib=size / 2**30)
        meter.fill(run)
        run.rss_growth_mib = (sampler.peak - server.idle_kib) / 1024
        run.rss_retained_mib = (rss_kib(server.pid) - server.idle_kib) / 1024
        run.latencies = probe.latencies(start, end)
        run.loop_lag = loop_lag
        return run

    async def plain_multipart(self, size: int) -> Run:
        """(e): the same bytes straight to LocalStack, 8 MiB parts one after the other."""
        part = BLOCK * (PART // CHUNK)
        key = f"plain/{time.time_ns()}"
        async with self.probe(self.probe_base) as probe:
            meter = self.meter(probe, None, self.storage_pid)
            with meter:
                start = time.monotonic()
                created = await self.s3.create_multipart_upload(Bucket=BUCKET, Key=key)
                upload_id = created["UploadId"]
                parts = []
                for number, offset in enumerate(range(0, size, PART), start=1):
                    body = part if size - offset >= PART else part[: size - offset]
                    response = await self.s3.upload_part(
                        Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=body
                    )
                    parts.append({"PartNumber": number, "ETag": response["ETag"]})
                await self.s3.complete_multipart_upload(
                    Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
                )
                end = time.monotonic()
        await self.s3.delete_object(Bucket=BUCKET, Key=key)
        run = Run(mib_s=size / MiB / (end - start), seconds=end - start, gib=size / 2**30)
        meter.fill(run)
        return run


async def settle(max_wait: float = 45) -> None:
    """Let the previous upload's after-effects (dirty pages of LocalStack's and the
    tutorial's files, freed memory) and other users of the machine pass: sync, then
    wait, up to ``max_wait`` s, until the machine has been nearly idle for 0.75 s."""
    await asyncio.to_thread(os.sync)
    deadline = time.monotonic() + max_wait
    quiet = 0
    while quiet < 3 and time.monotonic() < deadline:
        before = machine_busy_seconds()
        await asyncio.sleep(0.25)
        # Under 15 % of one core (the idle servers and LocalStack included).
        quiet = quiet + 1 if machine_busy_seconds() - before < 0.25 * 0.15 else 0


async def warm_up(bench: Bench, server: Server) -> None:
    """One upload of a few parts (imports, connections, buffers), then the idle RSS."""
    async with httpx.AsyncClient(timeout=120) as client:
        response = await client.request(**bench.request(server, 3 * PART, raw=False))
    if response.status_code not in (200, 201):
        raise RuntimeError(f"{server.mode}: {response.status_code} {response.text[:500]}")
    if server.mode == "s3":
        await bench.s3.delete_object(Bucket=BUCKET, Key=response.json()["file_key"])
    await asyncio.sleep(1)
    server.idle_kib = rss_kib(server.pid)


class Retries:
    def __init__(self) -> None:
        self.retried = 0

    async def run(
        self, measure_once: Callable[[], Awaitable[Run]], show: Callable[[Run], None]
    ) -> Run:
        best: Run | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            await settle()
            run = await measure_once()
            run.attempt = attempt
            show(run)
            if best is None or run.foreign_cpu / run.seconds < best.foreign_cpu / best.seconds:
                best = run
            if best.foreign_cpu / best.seconds <= FOREIGN_CPU_LIMIT:
                break
            if self.retried >= MAX_RETRIES:
                break
            self.retried += 1
            print(f"  (disturbed: {', '.join(run.top_others)}; measuring again)", flush=True)
        assert best is not None
        return best


# --- the run ---------------------------------------------------------------------------

Results = dict[tuple[str, int], list[Run]]


async def measure(
    work: Path, sizes: list[int], rounds: int, profile: Path | None, variants: list[str]
) -> tuple[Results, dict[str, Any]]:
    results: Results = {}
    notes: dict[str, Any] = {
        "load_before": os.getloadavg(),
        "started": time.monotonic(),
        "variants": variants,
    }
    # The drain server always runs: (e)'s /healthz probe calls it.
    wanted = {A} | {SERVER_OF[v] for v in variants if v in SERVER_OF}
    with contextlib.ExitStack() as stack:
        ls = stack.enter_context(localstack())
        servers: dict[str, Server] = {}
        for variant, mode in MODES.items():
            if variant not in wanted:
                continue
            endpoint = ls.endpoint_url if mode in ("tutorial", "s3") else None
            stats = None
            if profile is not None and mode in ("drain", "null", "s3"):
                stats = profile / f"{mode}.prof"
            server = Server(mode, work, endpoint, stats)
            stack.callback(server.stop)
            servers[variant] = server
        async with aioboto3.Session().client(
            "s3", endpoint_url=ls.endpoint_url, **S3_CREDENTIALS
        ) as s3:
            await s3.create_bucket(Bucket=BUCKET)
            for server in servers.values():
                server.wait_ready()
            token = mint_token(settings(), sub="bench")
            bench = Bench(
                work=work,
                storage_pid=ls.pid,
                server_pids={server.pid for server in servers.values()},
                auth={"Authorization": f"Bearer {token}"},
                s3=s3,
                probe_base=servers[A].base,
            )
            for server in servers.values():
                await warm_up(bench, server)
            notes["idle_rss_mib"] = {v: s.idle_kib / 1024 for v, s in servers.items()}
            retries = Retries()
            for size in sizes:
                for round_ in range(1, rounds + 1):
                    for variant in variants:
                        measure_once = (
                            functools.partial(bench.plain_multipart, size)
                            if variant == E
                            else functools.partial(
                                bench.upload, servers[SERVER_OF[variant]], size, raw=variant == F
                            )
                        )
                        show = functools.partial(progress, variant, size, round_)
                        run = await retries.run(measure_once, show)
                        results.setdefault((variant, size), []).append(run)
            notes["retried"] = retries.retried
            await empty_bucket(s3)
        notes["load_after"] = os.getloadavg()
        notes["minutes"] = (time.monotonic() - notes["started"]) / 60
    return results, notes


async def empty_bucket(s3: Any) -> None:
    listing = await s3.list_objects_v2(Bucket=BUCKET)
    for item in listing.get("Contents", []):
        await s3.delete_object(Bucket=BUCKET, Key=item["Key"])


def progress(variant: str, size: int, round_: int, run: Run) -> None:
    attempt = f" (attempt {run.attempt})" if run.attempt > 1 else ""
    parts = [f"{LABELS[variant]:38} {size // MiB:5} MiB #{round_}{attempt}: {run.mib_s:6.0f} MiB/s"]
    if run.rss_growth_mib is not None:
        parts.append(f"RSS +{run.rss_growth_mib:.1f} MiB (retained {run.rss_retained_mib:+.1f})")
    if run.server_cpu is not None:
        parts.append(
            f"server CPU {run.server_cpu / run.seconds:.0%} ({run.server_cpu / run.gib:.2f} s/GiB"
            f"; loop thread {(run.server_loop_cpu or 0) / run.gib:.2f} s/GiB)"
        )
    if run.storage_cpu is not None:
        parts.append(f"LocalStack CPU {run.storage_cpu / run.seconds:.0%}")
    parts.append(f"client CPU {run.client_cpu / run.seconds:.0%}")
    parts.append(f"other CPU {run.foreign_cpu / run.seconds:.0%}")
    if run.latencies:
        p50, p99 = percentile(run.latencies, 50), percentile(run.latencies, 99)
        parts.append(f"healthz n={len(run.latencies)} p50 {p50:.1f} p99 {p99:.1f} ms")
    if run.loop_lag:
        lag = run.loop_lag
        parts.append(
            f"loop lag p99 {lag['p99']:.1f} max {lag['max']:.1f} ms ({lag['over_10ms']:.0f} > 10 ms)"
        )
    print(", ".join(parts), flush=True)


# --- the report ---------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


@dataclass
class Summary:
    mib_s: float
    server_cpu_pct: float | None
    server_cpu_s_per_gib: float | None
    server_loop_cpu_s_per_gib: float | None
    storage_cpu_pct: float | None
    client_cpu_pct: float
    rss_growth_mib: float | None  # median over the rounds
    rss_growth_max_mib: float | None
    latencies: list[float]  # every round's, pooled
    lag_p99_ms: float | None  # median over the rounds
    lag_max_ms: float | None  # worst round


def summarize(runs: list[Run]) -> Summary:
    def share(used: list[float | None]) -> float | None:
        return median(
            [None if u is None else 100 * u / r.seconds for u, r in zip(used, runs, strict=True)]
        )

    growths = [r.rss_growth_mib for r in runs if r.rss_growth_mib is not None]
    return Summary(
        mib_s=statistics.median(r.mib_s for r in runs),
        server_cpu_pct=share([r.server_cpu for r in runs]),
        server_cpu_s_per_gib=median(
            [None if r.server_cpu is None else r.server_cpu / r.gib for r in runs]
        ),
        server_loop_cpu_s_per_gib=median(
            [None if r.server_loop_cpu is None else r.server_loop_cpu / r.gib for r in runs]
        ),
        storage_cpu_pct=share([r.storage_cpu for r in runs]),
        client_cpu_pct=statistics.median(100 * r.client_cpu / r.seconds for r in runs),
        rss_growth_mib=statistics.median(growths) if growths else None,
        rss_growth_max_mib=max(growths) if growths else None,
        latencies=[latency for r in runs for latency in r.latencies],
        lag_p99_ms=median([r.loop_lag["p99"] if r.loop_lag else None for r in runs]),
        lag_max_ms=max((r.loop_lag["max"] for r in runs if r.loop_lag), default=None),
    )


def verdict(ok: bool) -> str:
    return "holds" if ok else "**misses**"


def fmt(value: float | None, spec: str, suffix: str = "") -> str:
    return "" if value is None else f"{value:{spec}}{suffix}"


def table_rows(summaries: dict[tuple[str, int], Summary], sizes: list[int]) -> list[list[str]]:
    rows = []
    for size in sizes:
        for variant in VARIANTS:
            if (variant, size) not in summaries:
                continue
            s = summaries[(variant, size)]
            latency = ""
            if s.latencies:
                latency = (
                    f"{percentile(s.latencies, 50):.1f} / {percentile(s.latencies, 99):.1f} ms"
                    f" (n={len(s.latencies)})"
                )
            rss = ""
            if s.rss_growth_mib is not None and s.rss_growth_max_mib is not None:
                rss = f"{s.rss_growth_mib:.1f} MiB (max {s.rss_growth_max_mib:.1f})"
            server_cpu = ""
            if s.server_cpu_pct is not None and s.server_cpu_s_per_gib is not None:
                server_cpu = (
                    f"{s.server_cpu_pct:.0f} % ({s.server_cpu_s_per_gib:.2f} s/GiB; "
                    f"loop thread {s.server_loop_cpu_s_per_gib or 0:.2f})"
                )
            lag = ""
            if s.lag_p99_ms is not None and s.lag_max_ms is not None:
                lag = f"{s.lag_p99_ms:.1f} / {s.lag_max_ms:.1f} ms"
            rows.append(
                [
                    LABELS[variant],
                    f"{size // MiB} MiB",
                    f"{s.mib_s:.0f} MiB/s",
                    server_cpu,
                    fmt(s.storage_cpu_pct, ".0f", " %"),
                    f"{s.client_cpu_pct:.0f} %",
                    rss,
                    latency,
                    lag,
                ]
            )
    return rows


def verdict_lines(
    results: Results, summaries: dict[tuple[str, int], Summary], sizes: list[int]
) -> list[str]:
    lines = []
    for size in sizes:
        name = f"{size // MiB} MiB"
        for num, den, what in (
            (C, A, "null sink vs (a)"),
            (F, A, "raw PUT, null sink vs (a)"),
            (D, E, "S3 vs (e)"),
        ):
            if (num, size) not in summaries or (den, size) not in summaries:
                continue
            ratio = summaries[(num, size)].mib_s / summaries[(den, size)].mib_s
            per_round = [
                n.mib_s / d.mib_s
                for n, d in zip(results[(num, size)], results[(den, size)], strict=True)
            ]
            extra = ""
            cpu_num = summaries[(num, size)].server_cpu_s_per_gib
            cpu_den = summaries[(den, size)].server_cpu_s_per_gib
            if cpu_num and cpu_den:
                extra = f"; server CPU per GiB ({num})/({den}) {cpu_num / cpu_den:.2f}×"
            lines.append(
                f"- {name}, ({num})/({den}) {what}: {ratio:.2f} (rounds "
                f"{', '.join(f'{r:.2f}' for r in per_round)}; target ≥ {RATIO_TARGET}{extra}) "
                f"→ {verdict(ratio >= RATIO_TARGET)}"
            )
        for variant in (C, F, D):
            if (variant, size) not in summaries:
                continue
            s = summaries[(variant, size)]
            assert s.rss_growth_max_mib is not None
            p99 = percentile(s.latencies, 99)
            lines.append(
                f"- {name}, ({variant}) peak RSS growth, worst round: {s.rss_growth_max_mib:.1f} MiB "
                f"(target ≤ {RSS_BOUND_MIB:.0f}) → {verdict(s.rss_growth_max_mib <= RSS_BOUND_MIB)}; "
                f"/healthz p99 {p99:.1f} ms (target ≤ {P99_BOUND_MS:.0f}) "
                f"→ {verdict(p99 <= P99_BOUND_MS)}"
            )
    if len(sizes) == 2:
        small, large = sizes
        for variant in (C, F, D):
            if (variant, small) not in summaries:
                continue
            low = summaries[(variant, small)].rss_growth_mib
            high = summaries[(variant, large)].rss_growth_mib
            assert low is not None and high is not None
            lines.append(
                f"- ({variant}) RSS growth {small // MiB} MiB → {large // MiB} MiB: "
                f"{low:.1f} → {high:.1f} MiB ({high - low:+.1f}; target: none, "
                f"±{FLAT_TOLERANCE_MIB:.0f} MiB sampling noise) "
                f"→ {verdict(high - low <= FLAT_TOLERANCE_MIB)}"
            )
    return lines


def report(
    results: Results, sizes: list[int], rounds: int, notes: dict[str, Any], command: str
) -> str:
    summaries = {key: summarize(runs) for key, runs in results.items()}
    foreign = max(
        100 * r.foreign_cpu / r.seconds for runs in results.values() for r in runs if r.seconds
    )
    idle = ", ".join(f"({v}) {mib:.0f} MiB" for v, mib in notes["idle_rss_mib"].items())
    machine = (
        f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
        "uvicorn with uvloop and httptools; the client, the server under test, the "
        "/healthz probe and LocalStack share the 2 cores, so the client's own CPU is part "
        "of every figure (the servers are idle when not under test). Load average "
        f"{notes['load_before'][0]:.2f} before, {notes['load_after'][0]:.2f} after; the run "
        f"took {notes['minutes']:.1f} min. CPU time outside the benchmark's processes (other "
        "sessions, kernel threads such as disk writeback, time stolen by the host; not "
        f"interrupts) was at most {foreign:.0f} % of one core during any upload kept; an "
        f"upload with more than {FOREIGN_CPU_LIMIT:.0%} was measured again (up to "
        f"{MAX_ATTEMPTS} times, the least disturbed kept): {notes['retried']} "
        "re-measurements in this run."
    )
    headers = [
        "variant",
        "body",
        "throughput",
        "server CPU",
        "LocalStack CPU",
        "client CPU",
        "server RSS growth",
        "/healthz p50 / p99",
        "server loop lag p99 / max",
    ]
    return (
        "## Direct uploads\n\n"
        f"Command: `{command}` — LocalStack 4.13.1 (S3 over HTTP on loopback) as the S3 "
        f"server; median of {rounds} rounds, the rounds interleaved "
        f"({', '.join(notes['variants'])}, {notes['variants'][0]}, ...).\n\n"
        f"Machine: {machine}\n\n"
        "Throughput is body bytes over the wall time of the request. CPU is the median share "
        "of one core over the upload (server process; LocalStack; this client); for the "
        "server also its CPU seconds per GiB of body, which depends little on what else "
        "runs, in all its threads and in the thread that runs the event loop (uploadsvc "
        "hashes in worker threads, so the loop thread is its critical path; (a) and (b) "
        "do everything on the loop). RSS growth is the server's peak VmRSS (sampled every 20 ms) minus its idle "
        "VmRSS after a warm-up upload of 24 MiB "
        f"(idle: {idle}). /healthz: p50 / p99 over every round of the "
        "requests (one every ~10 ms, own connection, own process) that started during the "
        "upload; for (e) they go to the idle drain server, to keep the same background load. "
        "Server loop lag: how late a 5 ms sleep in the server's event loop woke up during the "
        "upload (p99 median over the rounds / worst), i.e. how long the loop was blocked "
        "plus how long the process waited for a CPU. Before each upload the run syncs the "
        "disks and waits for the machine to be quiet.\n\n"
        + table(headers, table_rows(summaries, sizes))
        + "\n\n"
        + "\n".join(verdict_lines(results, summaries, sizes))
        + "\n\n"
        + NOTES
    )


NOTES = """\
Where the time and the memory go (measured separately, not by this run):

- Most of the multipart route's cost over (f) is finding the boundary: python-multipart
  0.0.34 scans with `bytes.find`, 0.12-0.18 s per GiB in one process;
  streaming-form-data 2.1 (Cython) took 0.17-0.20 s/GiB on the same data, so
  it was not adopted.
- uploadsvc hashes the file's SHA-256 in a worker thread (hashlib releases the
  GIL), from two 2 MiB buffers that the loop fills in turn; its loop thread,
  the critical path, does less work than (a)'s. Each hand-off to the thread
  costs the loop a wake-up, so the buffers are not smaller; the process as a
  whole uses more CPU than (a), which a busy 2-core machine shows in the ratio.
- To S3 (d), each 8 MiB part is sent from its buffer (aiohttp would copy a
  `bytearray` twice) and signed with a SHA-256 computed in a thread (botocore
  hashed every part for SigV4 on the event loop). At most two part buffers
  (16 MiB) and two hash buffers (4 MiB) are allocated at a time; the growth
  measured can be below their sum, as the allocator keeps some memory freed
  after the warm-up upload, which the idle figure includes.
"""


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


@contextlib.contextmanager
def work_dir() -> Iterator[Path]:
    with TemporaryDirectory(prefix="direct-bench-") as tmp:
        yield Path(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description="Direct uploads vs baselines.")
    parser.add_argument("--quick", action="store_true", help="32 and 128 MiB, one round")
    parser.add_argument("--rounds", type=int, help="rounds per size (default 3, --quick 1)")
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help="the variants to run, in this order (default: all; a subset writes nothing "
        "to BENCHMARKS.md)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        help="run (a), (c) and (d) under cProfile, stats into this folder (slower; "
        "nothing is written to BENCHMARKS.md)",
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {', '.join(VARIANTS)}")
    sizes = [32 * MiB, 128 * MiB] if args.quick else [256 * MiB, 1024 * MiB]
    rounds = args.rounds or (1 if args.quick else 3)
    if args.profile is not None:
        args.profile = args.profile.resolve()
        args.profile.mkdir(parents=True, exist_ok=True)
    with work_dir() as work:
        results, notes = asyncio.run(measure(work, sizes, rounds, args.profile, variants))
    command = "uv run python -m bench.direct_bench"
    if args.quick:
        command += " --quick"
    if args.rounds:
        command += f" --rounds {args.rounds}"
    if variants != list(VARIANTS):
        command += f" --variants {args.variants}"
    text = report(results, sizes, rounds, notes, command)
    print(text)
    if not args.quick and args.profile is None and variants == list(VARIANTS):
        write_section("direct", text)
        print("BENCHMARKS.md: the direct section is updated")


if __name__ == "__main__":
    main()
