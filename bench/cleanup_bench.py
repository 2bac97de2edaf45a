"""Issue 5: cleanup against a bucket where 20 % of the objects are orphans.

Side by side in one run, on the same bucket:
- a bare listing of the upload prefixes (the floor: cleanup must list everything);
- uploadsvc's ``run_cleanup`` (one listing, one row lookup per page,
  ``DeleteObjects`` in batches of 1000);
- the tutorial baseline: list everything, then one SELECT per key and one
  DELETE request per orphan.
The orphans are put back before each deleting run, so both see the same
bucket. Storage requests are counted on the client (botocore's
``before-send`` event for S3; calls into the backend for the local one), DB
queries with SQLAlchemy's ``before_cursor_execute``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime as dt
import math
import os
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import event, insert, select

from bench.common import localstack, s3_settings, scratch_database, settings, table, write_section
from uploadsvc.db import utcnow
from uploadsvc.models import Upload, UploadStatus
from uploadsvc.resources import Resources, open_resources
from uploadsvc.services.cleanup import _LISTING_START, run_cleanup
from uploadsvc.storage import LocalStorage, S3Storage, Storage
from uploadsvc.storage.base import ListedObject

BODY = b"x" * 64


class Counters:
    def __init__(self) -> None:
        self.storage: collections.Counter[str] = collections.Counter()
        self.db = 0

    def reset(self) -> None:
        self.storage.clear()
        self.db = 0


def instrument(resources: Resources, counters: Counters) -> None:
    def on_query(*_: Any) -> None:
        counters.db += 1

    event.listen(resources.engine.sync_engine, "before_cursor_execute", on_query)
    storage = resources.storage
    if isinstance(storage, S3Storage):

        def on_send(event_name: str, **_: Any) -> None:
            counters.storage[event_name.rsplit(".", 1)[-1]] += 1

        storage._client.meta.events.register("before-send.s3", on_send)
        return
    # The local backend makes no HTTP requests: count the calls that would be.
    pages, delete_many, delete = storage.list_pages, storage.delete_many, storage.delete

    async def counted_pages(*args: Any, **kwargs: Any) -> AsyncIterator[list[ListedObject]]:
        async for page in pages(*args, **kwargs):
            counters.storage["ListObjectsV2"] += 1
            yield page

    async def counted_delete_many(keys: list[str]) -> None:
        counters.storage["DeleteObjects"] += 1
        await delete_many(keys)

    async def counted_delete(key: str) -> None:
        counters.storage["DeleteObject"] += 1
        await delete(key)

    storage.list_pages = counted_pages  # type: ignore[method-assign]
    storage.delete_many = counted_delete_many  # type: ignore[method-assign]
    storage.delete = counted_delete  # type: ignore[method-assign]


def make_keys(total: int) -> tuple[list[str], list[str]]:
    keys = [f"uploads/user{n % 50}/2026/01/01/{uuid.uuid4()}.txt" for n in range(total)]
    orphans = keys[: total // 5]
    return keys, orphans


async def put_objects(storage: Storage, root: Path | None, keys: list[str]) -> None:
    if isinstance(storage, LocalStorage):
        assert root is not None

        def write_all() -> None:
            for key in keys:
                path = root / "objects" / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(BODY)

        await asyncio.to_thread(write_all)
        return
    assert isinstance(storage, S3Storage)
    gate = asyncio.Semaphore(64)
    bucket = storage._bucket

    async def put(key: str) -> None:
        async with gate:
            await storage._client.put_object(Bucket=bucket, Key=key, Body=BODY)

    await asyncio.gather(*(put(key) for key in keys))


async def add_rows(resources: Resources, keys: list[str]) -> None:
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "owner_id": "bench",
            "purpose": "attachment",
            "file_key": key,
            "filename": "f.txt",
            "content_type": "text/plain",
            "size_bytes": len(BODY),
            "sha256": None,
            "status": UploadStatus.CONFIRMED,
            "created_at": now,
            "url_expires_at": now,
            "confirmed_at": now,
        }
        for key in keys
    ]
    async with resources.session_factory() as session, session.begin():
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Upload), rows[start : start + 5000])


async def bare_listing(storage: Storage) -> int:
    seen = 0
    async for page in storage.list_pages(start_after=_LISTING_START):
        seen += len(page)
    return seen


async def tutorial_cleanup(resources: Resources) -> int:
    """What the usual tutorial does: list everything, check and delete key by key."""
    keys: list[str] = []
    async for page in resources.storage.list_pages(start_after=_LISTING_START):
        keys.extend(listed.key for listed in page)
    deleted = 0
    async with resources.session_factory() as session:
        for key in keys:
            row = await session.scalar(select(Upload.id).where(Upload.file_key == key))
            if row is None:
                await resources.storage.delete(key)
                deleted += 1
    return deleted


async def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = await run()
    return time.perf_counter() - start, result


async def measure(
    backend: str, total: int, database_url: str, extra: dict[str, Any]
) -> dict[str, Any]:
    with TemporaryDirectory() as tmp:
        root = Path(tmp) / "storage"
        config = settings(database_url=database_url, local_storage_dir=root, **extra)
        async with open_resources(config) as resources:
            await resources.storage.initialize(cors_origins=[])
            keys, orphans = make_keys(total)
            await put_objects(resources.storage, root, keys)
            await add_rows(resources, keys[len(orphans) :])
            counters = Counters()
            instrument(resources, counters)

            def cleanup() -> Any:
                return run_cleanup(
                    resources.session_factory,
                    resources.storage,
                    older_than=dt.timedelta(0),
                    now=utcnow() + dt.timedelta(days=2),
                )

            counters.reset()
            list_time, listed = await timed(lambda: bare_listing(resources.storage))
            list_requests = sum(counters.storage.values())

            counters.reset()
            ours_time, report = await timed(cleanup)
            ours = (dict(counters.storage), counters.db)
            assert report.deleted == len(orphans), report

            await put_objects(resources.storage, root, orphans)
            counters.reset()
            base_time, base_deleted = await timed(lambda: tutorial_cleanup(resources))
            base = (dict(counters.storage), counters.db)
            assert base_deleted == len(orphans)

            # Memory, in a run of its own (tracemalloc slows Python down).
            await put_objects(resources.storage, root, orphans)
            tracemalloc.start()
            await cleanup()
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        async with open_resources(config) as resources, resources.engine.begin() as connection:
            from sqlalchemy import text

            await connection.execute(text("TRUNCATE uploads, cleanup_runs"))
    return {
        "backend": backend,
        "keys": total,
        "orphans": len(orphans),
        "listed": listed,
        "list_time": list_time,
        "list_requests": list_requests,
        "ours_time": ours_time,
        "ours_storage": ours[0],
        "ours_db": ours[1],
        "base_time": base_time,
        "base_storage": base[0],
        "base_db": base[1],
        "peak_mib": peak / 2**20,
    }


def report(results: list[dict[str, Any]], command: str) -> str:
    rows = []
    verdicts = []
    for r in results:
        bound = math.ceil(r["keys"] / 1000) + math.ceil(r["orphans"] / 1000)
        ours_requests = sum(r["ours_storage"].values())
        pages = math.ceil(r["keys"] / 1000)
        rows.append(
            [
                r["backend"],
                r["keys"],
                r["orphans"],
                f"{r['list_time']:.2f} s",
                f"{r['ours_time']:.2f} s ({r['ours_time'] / r['list_time']:.2f}×)",
                f"{r['base_time']:.2f} s ({r['base_time'] / r['list_time']:.1f}×)",
                f"{ours_requests} ({', '.join(f'{k} {v}' for k, v in sorted(r['ours_storage'].items()))})",
                f"{sum(r['base_storage'].values())}",
                f"≤ {bound}",
                f"{r['ours_db']}",
                f"{r['base_db']}",
                f"{r['peak_mib']:.1f} MiB",
            ]
        )
        verdicts.append(
            f"- {r['backend']}, {r['keys']} keys: storage requests {ours_requests} vs bound "
            f"{bound} → {'holds' if ours_requests <= bound else 'misses'}; DB queries "
            f"{r['ours_db']} for {pages} listing pages (+ 5 per run: lease take/release, "
            f"expire claim, run record, commit) → "
            f"{'holds' if r['ours_db'] <= pages + 5 else 'misses'}; wall time "
            f"{r['ours_time'] / r['list_time']:.2f}× the bare listing (target ≤ 1.3) → "
            f"{'holds' if r['ours_time'] <= 1.3 * r['list_time'] else 'misses'}"
        )
    local = [r for r in results if r["backend"] == "local"]
    if len(local) == 2:
        small, big = sorted(local, key=lambda r: r["keys"])
        verdicts.append(
            f"- memory: tracemalloc peak of a cleanup run {small['peak_mib']:.1f} MiB at "
            f"{small['keys']} keys, {big['peak_mib']:.1f} MiB at {big['keys']} keys (flat: one "
            "page and one delete batch at a time)"
        )
    headers = [
        "backend",
        "keys",
        "orphans",
        "bare listing",
        "uploadsvc cleanup",
        "tutorial baseline",
        "storage requests (uploadsvc)",
        "storage requests (baseline)",
        "target",
        "DB queries (uploadsvc)",
        "DB queries (baseline)",
        "peak memory (uploadsvc)",
    ]
    return (
        "## Cleanup of orphaned objects (issue 5)\n\n"
        f"Command: `{command}` (LocalStack 4.13.1 over HTTP on loopback, PostgreSQL 15; "
        "2 cores, client and servers on the same machine). 20 % of the keys are orphans, "
        "the rest confirmed rows. Times are wall clock, ratios against the bare listing of "
        "the same bucket in the same run.\n\n"
        + table(headers, rows)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n"
    )


async def main(quick: bool) -> None:
    sizes = {
        "s3": 1000 if quick else 10_000,
        "local": [1000, 10_000] if quick else [10_000, 100_000],
    }
    results = []
    async with scratch_database() as database_url:
        with localstack() as server:
            results.append(
                await measure("s3", int(sizes["s3"]), database_url, s3_settings(server))  # type: ignore[call-overload]
            )
        for total in sizes["local"]:  # type: ignore[union-attr]
            results.append(
                await measure("local", total, database_url, {"storage_backend": "local"})
            )
    command = "uv run python -m bench.cleanup_bench" + (" --quick" if quick else "")
    text = report(results, command)
    print(text)
    if not quick:
        write_section("cleanup", text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    asyncio.run(main(parser.parse_args().quick))
