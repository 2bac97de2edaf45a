"""Issue 3: streaming direct uploads, side by side with two baselines.

Each server runs in its own process (uvicorn, one worker, 127.0.0.1):
(a) a bare ``request.stream()`` drain that only hashes; (b) the common
tutorial handler (``UploadFile``, read everything, one ``put_object``);
(c) uploadsvc's ``POST /v1/uploads/direct`` with a storage that discards
the bytes; (d) the same to S3 (LocalStack). (e) is a plain client's
multipart upload of the same bytes straight to LocalStack. The client sends
the same multipart body to every server from a generator. The server's RSS
is sampled from /proc every 20 ms; while (c) and (d) run, another client
calls ``GET /healthz`` every 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import aioboto3
import httpx

from bench.common import REPO, localstack, settings, table, write_section
from bench.direct_server import BUCKET
from uploadsvc.security import mint_token

MiB = 2**20
CHUNK = MiB
BOUNDARY = "benchboundary"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class RssSampler:
    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class Server:
    def __init__(self, mode: str, data_dir: Path, endpoint: str | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "bench.direct_server", mode, str(self.port), str(data_dir)]
        self.process = subprocess.Popen([*args, *([endpoint] if endpoint else [])], cwd=REPO)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{mode} server did not start")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def multipart_body(size: int) -> tuple[AsyncIterator[bytes], int]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    block = (b"All work and no play makes Jack a dull boy.\n" * (CHUNK // 44 + 1))[:CHUNK]

    async def body() -> AsyncIterator[bytes]:
        yield head
        sent = 0
        while sent < size:
            piece = block[: min(CHUNK, size - sent)]
            sent += len(piece)
            yield piece
        yield tail

    return body(), len(head) + size + len(tail)


async def health_probe(base: str, stop: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=5) as client:
        while not stop.is_set():
            start = time.perf_counter()
            await client.get("/healthz")
            latencies.append((time.perf_counter() - start) * 1000)
            await asyncio.sleep(0.01)


async def upload(
    server: Server, path: str, size: int, headers: dict[str, str], probe: bool
) -> dict[str, Any]:
    body, length = multipart_body(size)
    idle = rss_kib(server.process.pid)
    latencies: list[float] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(health_probe(server.base, stop, latencies)) if probe else None
    with RssSampler(server.process.pid) as sampler:
        start = time.perf_counter()
        async with httpx.AsyncClient(timeout=600) as client:
            response = await client.post(
                server.base + path,
                content=body,
                headers={
                    **headers,
                    "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
                    "Content-Length": str(length),
                },
            )
        elapsed = time.perf_counter() - start
    stop.set()
    if prober:
        await prober
    assert response.status_code in (200, 201), response.text[:500]
    latencies.sort()
    return {
        "mib_s": size / MiB / elapsed,
        "rss_growth_mib": (sampler.peak - idle) / 1024,
        "p50": statistics.median(latencies) if latencies else None,
        "p99": latencies[int(len(latencies) * 0.99) - 1] if len(latencies) > 1 else None,
    }


async def plain_multipart(endpoint: str, size: int) -> dict[str, Any]:
    block = (b"All work and no play makes Jack a dull boy.\n" * (CHUNK // 44 + 1))[:CHUNK]
    part_size = 8 * MiB
    part = (block * (part_size // CHUNK))[:part_size]
    session = aioboto3.Session()
    start = time.perf_counter()
    async with session.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    ) as s3:
        key = f"plain/{time.time_ns()}"
        upload_id = (await s3.create_multipart_upload(Bucket=BUCKET, Key=key))["UploadId"]
        parts = []
        for number in range(1, size // part_size + 1):
            response = await s3.upload_part(
                Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number, Body=part
            )
            parts.append({"PartNumber": number, "ETag": response["ETag"]})
        await s3.complete_multipart_upload(
            Bucket=BUCKET, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        await s3.delete_object(Bucket=BUCKET, Key=key)
    return {"mib_s": size / MiB / (time.perf_counter() - start)}


def median_of(runs: list[dict[str, Any]], field: str) -> Any:
    values = [run[field] for run in runs if run.get(field) is not None]
    return statistics.median(values) if values else None


async def main(quick: bool) -> None:
    sizes = [32 * MiB, 128 * MiB] if quick else [256 * MiB, 1024 * MiB]
    repeats = 1 if quick else 2
    results: dict[tuple[str, int], dict[str, Any]] = {}
    with TemporaryDirectory() as tmp, localstack() as ls:
        session = aioboto3.Session()
        async with session.client(
            "s3",
            endpoint_url=ls.endpoint_url,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            region_name="us-east-1",
        ) as s3:
            await s3.create_bucket(Bucket=BUCKET)
        token = mint_token(settings(), sub="bench")
        auth = {"Authorization": f"Bearer {token}"}
        plan = [
            ("a: drain + hash", "drain", "/upload", {}, True),
            ("b: tutorial UploadFile", "tutorial", "/upload", {}, True),
            ("c: uploadsvc → null sink", "null", "/v1/uploads/direct", auth, True),
            ("d: uploadsvc → S3", "s3", "/v1/uploads/direct", auth, True),
        ]
        for label, mode, path, headers, probe in plan:
            data_dir = Path(tmp) / mode
            data_dir.mkdir()
            server = Server(mode, data_dir, ls.endpoint_url if mode in ("tutorial", "s3") else None)
            try:
                # Warm up (imports, first connections) before measuring memory.
                await upload(server, path, 4 * MiB, headers, probe=False)
                for size in sizes:
                    runs = [
                        await upload(server, path, size, headers, probe) for _ in range(repeats)
                    ]
                    results[(label, size)] = {
                        key: median_of(runs, key)
                        for key in ("mib_s", "rss_growth_mib", "p50", "p99")
                    }
                    print(label, size // MiB, results[(label, size)], flush=True)
            finally:
                server.stop()
        for size in sizes:
            runs = [await plain_multipart(ls.endpoint_url, size) for _ in range(repeats)]
            results[("e: plain client multipart → S3", size)] = {"mib_s": median_of(runs, "mib_s")}
    command = "uv run python -m bench.direct_bench" + (" --quick" if quick else "")
    text = report(results, sizes, command)
    print(text)
    if not quick:
        write_section("direct", text)


def report(results: dict[tuple[str, int], dict[str, Any]], sizes: list[int], command: str) -> str:
    rows = []
    for (label, size), r in results.items():
        rows.append(
            [
                label,
                f"{size // MiB} MiB",
                f"{r['mib_s']:.0f} MiB/s",
                f"{r['rss_growth_mib']:.0f} MiB" if r.get("rss_growth_mib") is not None else "",
                f"{r['p50']:.1f} / {r['p99']:.1f} ms" if r.get("p99") is not None else "",
            ]
        )
    verdicts = []
    for size in sizes:

        def speed(prefix: str, size: int = size) -> float:
            return float(
                next(
                    r["mib_s"]
                    for (label, s), r in results.items()
                    if s == size and label.startswith(prefix)
                )
            )

        null_ratio = speed("c:") / speed("a:")
        s3_ratio = speed("d:") / speed("e:")
        verdicts.append(
            f"- {size // MiB} MiB: uploadsvc to a null sink runs at {null_ratio:.2f}× the bare drain "
            f"(target ≥ 0.8) → {'holds' if null_ratio >= 0.8 else 'misses'}; to S3 at "
            f"{s3_ratio:.2f}× a plain client's multipart upload (target ≥ 0.8) → "
            f"{'holds' if s3_ratio >= 0.8 else 'misses'}"
        )
        for prefix in ("c:", "d:"):
            r = next(
                r for (label, s), r in results.items() if s == size and label.startswith(prefix)
            )
            verdicts.append(
                f"- {size // MiB} MiB, {prefix[0]}: RSS growth {r['rss_growth_mib']:.0f} MiB (target ≤ 24) → "
                f"{'holds' if r['rss_growth_mib'] <= 24 else 'misses'}; /healthz p99 {r['p99']:.1f} ms "
                f"(target ≤ 20) → {'holds' if r['p99'] <= 20 else 'misses'}"
            )
    return (
        "## Direct uploads (issue 3)\n\n"
        f"Command: `{command}` (each server its own uvicorn process on 127.0.0.1; LocalStack "
        "4.13.1 as the S3 server; 2 cores shared by the client, the server and LocalStack; "
        "median of the runs). RSS growth is the server's peak VmRSS minus its idle VmRSS.\n\n"
        + table(["server", "body", "throughput", "server RSS growth", "/healthz p50 / p99"], rows)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    asyncio.run(main(parser.parse_args().quick))
