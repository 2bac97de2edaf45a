"""Issuing presigned URLs: botocore's generate_presigned_url against S3Presigner.

    uv run python -m bench.presign_bench           # writes the presign section of BENCHMARKS.md
    uv run python -m bench.presign_bench --quick   # fewer URLs, prints only

Side by side in one process, in interleaved rounds, for the three URLs the
service hands out (PutObject with its four signed headers, GetObject with the
response overrides, UploadPart with a signed length):

- botocore: ``S3Storage.presign_put/presign_get/presign_part`` as they are
  today, i.e. aioboto3's ``generate_presigned_url`` on the presign client;
- uploadsvc's ``S3Presigner`` (``storage/s3_presign.py``) for the same
  bucket, endpoint and credentials;
- the floor: the cryptography a SigV4 query signature cannot skip, one
  SHA-256 of a canonical request and one HMAC-SHA256 with the day's signing
  key (and, beside it, the four HMACs that derive that key, which the
  presigner does once a day).

Per-URL times are medians over rounds of a loop in one task ("quiet"), and
of N tasks issuing URLs at once, each yielding to the event loop between
URLs as a request handler would ("N concurrent tasks"). "Event loop, 100
URLs" is how long the loop is held by one task issuing 100 part URLs (a
multipart upload of 100 parts), and the longest stall a ticker task saw
meanwhile. No request leaves the process: presigning is local work.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import hashlib
import hmac
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aioboto3
from aiobotocore.credentials import AioRefreshableCredentials

from bench.common import settings, table, write_section
from uploadsvc.storage.base import PartGrant, PutGrant
from uploadsvc.storage.s3 import S3Storage, open_s3_storage
from uploadsvc.storage.s3_presign import S3Presigner, open_presigner

BUCKET = "uploads-bench"
KEY = "uploads/4f7c1f0e-5a55-4d0b-9a53-bb0c1f0f7e11/2026/05/09/9d1e6c8ab2f04b4c.pdf"
SHA256 = base64.b64encode(hashlib.sha256(b"bench").digest()).decode()
UPLOAD_ID = "2~Zm9vYmFyYmF6cXV4LXVwbG9hZC1pZC1mb3ItdGhlLWJlbmNobWFyaw"
DISPOSITION = "attachment; filename=\"report.pdf\"; filename*=UTF-8''r%C3%A9port.pdf"
CONCURRENT_TASKS = 100

Issue = Callable[[int], Awaitable[str]]


@dataclass
class Variant:
    name: str
    botocore: Issue
    presigner: Issue


def variants(storage: S3Storage, presigner: S3Presigner) -> list[Variant]:
    # S3Storage itself signs with the presigner: botocore's side is its
    # presigning client's generate_presigned_url, with the parameters the
    # storage gave it before it had the presigner.
    client: Any = storage._presign_client
    bucket = BUCKET

    async def put_b(i: int) -> str:
        url: str = await client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": bucket,
                "Key": KEY,
                "ContentType": "application/pdf",
                "ContentLength": i + 1,
                "IfNoneMatch": "*",
                "ChecksumSHA256": SHA256,
            },
            ExpiresIn=900,
        )
        return url

    async def put_p(i: int) -> str:
        return await presigner.presign_put_object(
            PutGrant(
                key=KEY,
                content_type="application/pdf",
                content_length=i + 1,
                sha256=SHA256,
                expires_in=900,
            )
        )

    async def get_b(i: int) -> str:
        url: str = await client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": bucket,
                "Key": KEY,
                "ResponseContentType": "application/pdf",
                "ResponseContentDisposition": DISPOSITION,
            },
            ExpiresIn=3600,
        )
        return url

    async def get_p(i: int) -> str:
        return await presigner.presign_get_object(
            KEY, expires_in=3600, content_type="application/pdf", content_disposition=DISPOSITION
        )

    async def part_b(i: int) -> str:
        url: str = await client.generate_presigned_url(
            "upload_part",
            Params={
                "Bucket": bucket,
                "Key": KEY,
                "UploadId": UPLOAD_ID,
                "PartNumber": i % 10_000 + 1,
                "ContentLength": 8 << 20,
            },
            ExpiresIn=900,
        )
        return url

    async def part_p(i: int) -> str:
        return await presigner.presign_upload_part(
            PartGrant(
                key=KEY,
                part_number=i % 10_000 + 1,
                content_length=8 << 20,
                expires_in=900,
                multipart_upload_id=UPLOAD_ID,
            )
        )

    return [
        Variant(
            "PutObject (Content-Type, Content-Length, If-None-Match, checksum signed)", put_b, put_p
        ),
        Variant("GetObject (response-content-type/-disposition)", get_b, get_p),
        Variant("UploadPart (partNumber, uploadId, Content-Length signed)", part_b, part_p),
    ]


async def quiet(issue: Issue, count: int) -> float:
    """Seconds per URL, one task issuing ``count`` URLs in a row."""
    started = time.perf_counter()
    for i in range(count):
        await issue(i)
    return (time.perf_counter() - started) / count


async def concurrent(issue: Issue, count: int) -> float:
    """Seconds per URL, CONCURRENT_TASKS tasks sharing ``count`` URLs."""
    each = max(1, count // CONCURRENT_TASKS)

    async def task(offset: int) -> None:
        for i in range(each):
            await issue(offset + i)
            await asyncio.sleep(0)  # a handler awaits other things between URLs

    started = time.perf_counter()
    await asyncio.gather(*(task(n * each) for n in range(CONCURRENT_TASKS)))
    return (time.perf_counter() - started) / (each * CONCURRENT_TASKS)


async def loop_hold(issue: Issue, urls: int = 100) -> tuple[float, float]:
    """(seconds one task holds the loop for ``urls`` URLs, longest stall a ticker saw)."""
    stalls: list[float] = []
    running = True

    async def ticker() -> None:
        last = time.perf_counter()
        while running:
            await asyncio.sleep(0)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    started = time.perf_counter()
    for i in range(urls):
        await issue(i)
    held = time.perf_counter() - started
    running = False
    await tick
    return held, max(stalls)


def crypto_floor(count: int) -> tuple[float, float]:
    """(SHA-256 of a canonical request + one HMAC, the four HMACs of key derivation), per URL."""
    canonical = (
        "PUT\n/uploads-bench/" + KEY + "\nX-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential="
        "AKIA%2F20260509%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20260509T120000Z&"
        "X-Amz-Expires=900&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost%3B"
        "if-none-match%3Bx-amz-checksum-sha256\ncontent-length:1\ncontent-type:application/pdf\n"
        "host:127.0.0.1:4566\nif-none-match:*\nx-amz-checksum-sha256:" + SHA256 + "\n\n"
        "content-length;content-type;host;if-none-match;x-amz-checksum-sha256\nUNSIGNED-PAYLOAD"
    ).encode()
    key = b"k" * 32
    started = time.perf_counter()
    for _ in range(count):
        digest = hashlib.sha256(canonical).hexdigest()
        hmac.digest(key, ("AWS4-HMAC-SHA256\n20260509T120000Z\n" + digest).encode(), "sha256").hex()
    sign = (time.perf_counter() - started) / count
    started = time.perf_counter()
    for _ in range(count):
        derived = hmac.digest(b"AWS4secret", b"20260509", "sha256")
        for part in (b"us-east-1", b"s3", b"aws4_request"):
            derived = hmac.digest(derived, part, "sha256")
    return sign, (time.perf_counter() - started) / count


def per_round(times: dict[str, list[float]], top: str, bottom: str) -> float:
    """The median of the rounds' ratios of ``top`` to ``bottom``."""
    return statistics.median(a / b for a, b in zip(times[top], times[bottom], strict=True))


def us(seconds: float) -> str:
    return f"{seconds * 1e6:,.1f} µs"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms"


async def assert_same_urls(variant: Variant) -> None:
    """Both signers give the same URL (retried: the clock may tick between the two)."""
    for _ in range(3):
        if await variant.botocore(7) == await variant.presigner(7):
            return
    raise AssertionError(f"{variant.name}: S3Presigner's URL is not botocore's")


def role_credentials() -> AioRefreshableCredentials:
    """Credentials as an IAM role gives them: refreshable (a coroutine per use), with a token."""

    async def refresh() -> dict[str, str]:
        return metadata

    expiry = dt.datetime.now(dt.UTC) + dt.timedelta(hours=6)
    metadata = {
        "access_key": "ASIABENCHMARK",
        "secret_key": "bench-secret",
        "token": "FwoGZXIvYXdzEBenchmarkSessionToken" * 8,
        "expiry_time": expiry.isoformat(),
    }
    return AioRefreshableCredentials.create_from_metadata(
        metadata=metadata, refresh_using=refresh, method="assume-role"
    )


async def measure(quick: bool) -> str:
    config = settings(
        storage_backend="s3",
        s3_endpoint_url="http://127.0.0.1:4566",
        s3_bucket=BUCKET,
        s3_access_key_id="bench-access-key",
        s3_secret_access_key="bench-secret",
        s3_addressing_style="path",
    )
    rounds = 3 if quick else 7
    botocore_count = 300 if quick else 2_000
    presigner_count = 3_000 if quick else 30_000
    async with open_s3_storage(config) as storage, open_s3_storage(config) as role_storage:
        presigner = await open_presigner(config, session=aioboto3.Session())
        # The same clients with a role's credentials: botocore's signer reads them here.
        role = role_credentials()
        role_storage._presign_client._request_signer._credentials = role
        with_role = S3Presigner(presigner.endpoint, role)
        rows: list[list[Any]] = []
        loop_rows: list[list[Any]] = []
        ratios: list[float] = []
        floors: list[tuple[float, float]] = []
        all_variants = variants(storage, presigner)
        all_variants.append(
            Variant(
                "PutObject, refreshable credentials (IAM role, session token)",
                variants(role_storage, with_role)[0].botocore,
                variants(role_storage, with_role)[0].presigner,
            )
        )
        for variant in all_variants:
            await assert_same_urls(variant)
            for issue in (variant.botocore, variant.presigner):  # warm up
                await quiet(issue, 50)
            times: dict[str, list[float]] = {k: [] for k in ("bq", "pq", "bc", "pc", "floor")}
            for _ in range(rounds):
                times["bq"].append(await quiet(variant.botocore, botocore_count))
                times["pq"].append(await quiet(variant.presigner, presigner_count))
                times["bc"].append(await concurrent(variant.botocore, botocore_count))
                times["pc"].append(await concurrent(variant.presigner, presigner_count))
                # The floor in the same round: other load on the machine moves both alike.
                floors.append(crypto_floor(presigner_count // 3))
                times["floor"].append(floors[-1][0])
            med = {k: statistics.median(v) for k, v in times.items()}

            ratios.append(per_round(times, "pq", "floor"))
            rows.append(
                [
                    variant.name,
                    us(med["bq"]),
                    f"**{us(med['pq'])}**",
                    f"{per_round(times, 'bq', 'pq'):,.0f}×",
                    us(med["bc"]),
                    f"**{us(med['pc'])}**",
                    f"{per_round(times, 'bc', 'pc'):,.0f}×",
                    f"{ratios[-1]:.1f}×",
                ]
            )
        floor_sign = statistics.median(f[0] for f in floors)
        floor_derive = statistics.median(f[1] for f in floors)
        part = all_variants[2]
        holds: dict[str, list[tuple[float, float]]] = {"botocore": [], "S3Presigner": []}
        for _ in range(rounds):
            holds["botocore"].append(await loop_hold(part.botocore))
            holds["S3Presigner"].append(await loop_hold(part.presigner))
        for name, values in holds.items():
            loop_rows.append(
                [
                    name,
                    ms(statistics.median(v[0] for v in values)),
                    ms(statistics.median(v[1] for v in values)),
                ]
            )
    command = "uv run python -m bench.presign_bench" + (" --quick" if quick else "")
    lines = [
        "## Presigned URLs: botocore against S3Presigner",
        "",
        f"Command: `{command}`. Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"botocore via aioboto3 (path-style endpoint, static keys unless said). Medians of {rounds} "
        f"interleaved rounds of {botocore_count:,} URLs (botocore) and {presigner_count:,} "
        f"(S3Presigner); concurrent: {CONCURRENT_TASKS} tasks, each yielding between URLs. "
        "Speed-ups and the ratio to the crypto floor are medians of per-round ratios (the floor "
        "is timed in every round). No request leaves the process.",
        "",
        table(
            [
                "URL",
                "botocore, quiet",
                "S3Presigner, quiet",
                "speed-up",
                f"botocore, {CONCURRENT_TASKS} tasks",
                f"S3Presigner, {CONCURRENT_TASKS} tasks",
                "speed-up",
                "S3Presigner ÷ crypto floor",
            ],
            rows,
        ),
        "",
        f"Crypto floor (SHA-256 of the canonical request + one HMAC-SHA256): {us(floor_sign)} "
        f"per URL; deriving the signing key (4 HMACs, once a day per credentials): "
        f"{us(floor_derive)}. S3Presigner is {min(ratios):.1f}–{max(ratios):.1f}× the floor.",
        "",
        "Event loop, 100 UploadPart URLs issued by one task (a 100-part multipart upload):",
        "",
        table(
            ["signer", "loop held for 100 URLs", "longest stall seen by a ticker task"], loop_rows
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Presigned URLs: botocore vs S3Presigner.")
    parser.add_argument("--quick", action="store_true", help="fewer URLs; BENCHMARKS.md untouched")
    arguments = parser.parse_args()
    section = asyncio.run(measure(arguments.quick))
    print(section)
    if not arguments.quick:
        write_section("presign", section)


if __name__ == "__main__":
    main()
