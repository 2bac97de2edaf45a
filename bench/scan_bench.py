"""Malware-scan throughput: an object in S3 through the service to clamd, against local disk.

    uv run python -m bench.scan_bench           # writes the scan section of BENCHMARKS.md
    uv run python -m bench.scan_bench --quick   # 10 MiB, prints only

One clamd (tests/support/clamd.py: Debian's clamav-daemon with an EICAR-only
signature database, so the scan itself is cheap and the bytes' path is what
is measured) and one object of random bytes, stored in LocalStack and on the
local disk. In interleaved rounds:

- service, S3 → clamd: ``services.scanning._scan``, the code of the scan job:
  ``storage.read_chunks`` (aioboto3 GetObject, 1 MiB reads) into
  ``scanner.ClamdClient.scan`` (INSTREAM on asyncio streams);
- S3 read only: the same reads, bytes dropped (the bound S3 sets);
- local disk → clamd, INSTREAM: the same client fed from the file;
- ``clamdscan --stream``: ClamAV's own client reading the file.

Throughput is the object's size over the median time of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
from tests.support.clamd import ClamdServer

from bench.common import localstack, publish, s3_settings, settings, table
from uploadsvc.models.uploads import ScanState, Upload
from uploadsvc.scanner import ClamdClient
from uploadsvc.services.scanning import _scan
from uploadsvc.storage import open_storage

MiB = 1024 * 1024
KEY = "uploads/bench/2026/12/04/scan-bench.bin"


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        while chunk := await f.read(MiB):
            yield chunk


async def _chunks_of(data: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(data), 8 * MiB):
        yield data[start : start + 8 * MiB]


async def run(size: int, rounds: int) -> tuple[list[list[str]], float]:
    data = os.urandom(size)
    folder = Path(tempfile.mkdtemp(prefix="scan-bench-"))
    local_file = folder / "object.bin"
    local_file.write_bytes(data)
    with ClamdServer(stream_max_bytes=size + MiB) as clamd, localstack() as server:
        values = s3_settings(
            server,
            scan_backend="clamd",
            clamd_url=clamd.url,
            clamd_stream_max_bytes=size + MiB,
            database_url=f"sqlite+aiosqlite:///{folder / 'unused.db'}",
        )
        config = settings(**values)
        async with open_storage(config, tracker=None) as storage:
            await storage.initialize(cors_origins=[])
            await storage.put_stream(
                KEY, content_type="application/octet-stream", chunks=_chunks_of(data)
            )
            upload = Upload(file_key=KEY, size_bytes=size, scan_state=ScanState.PENDING)
            client = ClamdClient.from_settings(config)

            async def service() -> None:
                state, _ = await _scan(storage, config, upload)
                assert state is ScanState.CLEAN, state

            async def s3_only() -> None:
                async for _chunk in storage.read_chunks(KEY):
                    pass

            async def local_instream() -> None:
                verdict = await client.scan(_file_chunks(local_file))
                assert not verdict.infected

            async def clamdscan() -> None:
                command = ["clamdscan", "-c", str(clamd.config_path), "--stream", "--no-summary"]
                result = await asyncio.to_thread(
                    subprocess.run, [*command, str(local_file)], capture_output=True, check=False
                )
                assert result.returncode == 0, result.stdout + result.stderr

            variants: dict[str, Callable[[], Awaitable[None]]] = {
                "service: S3 → clamd (INSTREAM)": service,
                "S3 read only (no clamd)": s3_only,
                "local disk → clamd (INSTREAM, same client)": local_instream,
                "local disk → clamd (`clamdscan --stream`)": clamdscan,
            }
            for (
                variant
            ) in variants.values():  # warm-up: connections, caches, LocalStack's code paths
                await variant()
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(rounds):
                for name, variant in variants.items():
                    started = time.perf_counter()
                    await variant()
                    times[name].append(time.perf_counter() - started)
    rows = []
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, median in medians.items():
        rows.append([name, f"{median * 1000:.0f} ms", f"{size / MiB / median:.0f} MiB/s"])
    ratio = (
        medians["local disk → clamd (`clamdscan --stream`)"]
        / (medians["service: S3 → clamd (INSTREAM)"])
    )
    return rows, ratio


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    size = 10 * MiB if args.quick else 100 * MiB
    rounds = 2 if args.quick else 5
    rows, ratio = asyncio.run(run(size, rounds))
    body = "\n".join(
        [
            "## Malware scanning throughput",
            "",
            f"A {size // MiB} MiB object of random bytes, scanned by one clamd "
            f"(Debian clamav-daemon, EICAR-only signatures) on {platform.machine()}, "
            f"median of {rounds} interleaved rounds after a warm-up one (`bench/scan_bench.py`). "
            "S3 is LocalStack on loopback, on the same 2 cores as clamd and the service.",
            "",
            table(["path", "time", "throughput"], rows),
            "",
            f"The service's path runs at **{ratio:.2f}×** `clamdscan --stream` reading "
            "the same bytes from local disk.",
        ]
    )
    publish("scan", body, quick=args.quick)


if __name__ == "__main__":
    main()
