"""Cleanup of a bucket in which 20 % of the objects are orphans.

    uv run python -m bench.cleanup_bench           # S3 10,000 + local 10,000/100,000; writes BENCHMARKS.md
    uv run python -m bench.cleanup_bench --quick   # S3 1,000 + local 1,000/10,000; prints only

Side by side on the same bucket, in interleaved rounds (the orphans are put
back before every run that deletes, so every variant sees the same bucket):

- the bare listing of the upload prefixes (``list_pages``, nothing else):
  the floor, since any cleanup lists everything;
- uploadsvc's ``run_cleanup``: the whole run (lease, expiry claim, the
  listing, one lookup per page, deletions, the multipart check, the record);
- the same run dry (no deletions): what listing plus lookups cost;
- the bare deletion of the orphans, batched as cleanup batches them, with
  no listing and no database: what deleting alone costs;
- once, the tutorial baseline: list everything, then one SELECT per key and
  one delete per orphan.

Orphans are objects with no row (half of them) and objects whose row is
``rejected`` or ``deleted`` (a quarter each); the other 80 % are confirmed.
On the local backend every object has its metadata file, as LocalStorage
writes them, and runs are timed with the orphans in two states: on disk
(``os.sync()`` after writing them: orphans are a day old when cleanup sees
them) and still in the page cache (written just before the run).

Storage requests are counted on the client: botocore's ``before-send`` event
for S3 (every HTTP request, retries included), the calls into the backend for
the local one (it makes no requests; a page pulled or a delete call stands for
one). DB queries are the statements SQLAlchemy sends
(``before_cursor_execute``), sorted by what they are.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime as dt
import gc
import json
import math
import os
import platform
import statistics
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any, TypeVar

from sqlalchemy import event, insert, select, text

from bench.common import (
    REPO,
    localstack,
    s3_settings,
    scratch_database,
    settings,
    table,
    write_section,
)
from uploadsvc.db import utcnow
from uploadsvc.models.uploads import Upload, UploadStatus
from uploadsvc.resources import Resources, open_resources
from uploadsvc.services.cleanup import (
    _DELETES_IN_FLIGHT,
    _LISTING_START,
    CleanupReport,
    run_cleanup,
)
from uploadsvc.storage import LocalStorage, S3Storage, Storage
from uploadsvc.storage.base import DELETE_BATCH_SIZE, ListedObject

T = TypeVar("T")

BODY = b"orphan?\n"
META = json.dumps({"content_type": "text/plain", "sha256": None})
# Objects per uploads/{user}/2026/01/01/ folder. The local backend sorts one
# folder at a time in memory, so its memory follows the largest folder; a
# fixed fan-out keeps "memory flat" a statement about the bucket's size.
OBJECTS_PER_FOLDER = 100
PUT_CONCURRENCY = 64
ROUNDS = 3  # timed rounds per state of the orphans; medians are reported
KEYS_PER_REQUEST = 1000  # S3's page size and DeleteObjects limit
FLAT = 1.5  # "memory flat": at most this growth for ten times the keys
# How the DB statements of a run are sorted (first match wins).
STATEMENT_KINDS = [
    ("multipart ledger", "open_multipart_uploads"),
    ("page lookup", "join uploads on uploads.file_key"),
    ("per-key lookup", "from uploads where uploads.file_key ="),
    ("lease", "leases"),
    ("expire claim", "update uploads"),
    ("run record", "insert into cleanup_runs"),
]
FINISHED = {UploadStatus.REJECTED, UploadStatus.DELETED, UploadStatus.EXPIRED}
ON_DISK, IN_CACHE = "on disk", "in page cache"


def log(message: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the bucket ----------------------------------------------------------------


@dataclass
class Population:
    keys: list[str]
    no_row: list[str]
    rejected: list[str]
    deleted: list[str]
    confirmed: list[str]

    @property
    def orphans(self) -> list[str]:
        return self.no_row + self.rejected + self.deleted


def make_population(total: int) -> Population:
    folders = max(total // OBJECTS_PER_FOLDER, 1)
    keys = [f"uploads/user{n % folders}/2026/01/01/{uuid.uuid4()}.txt" for n in range(total)]
    orphans = total // 5
    half, quarter = orphans // 2, orphans // 4
    return Population(
        keys=keys,
        no_row=keys[:half],
        rejected=keys[half : half + quarter],
        deleted=keys[half + quarter : orphans],
        confirmed=keys[orphans:],
    )


async def put_objects(storage: Storage, root: Path, keys: list[str], *, sync: bool) -> None:
    """Store the objects; on the local backend, with ``sync``, on disk before returning."""
    if isinstance(storage, LocalStorage):
        # What LocalStorage keeps: <root>/objects/<key> and its metadata file
        # <root>/meta/<key>.json (written directly: put_stream is far slower).
        def write_all() -> None:
            made: set[Path] = set()
            for key in keys:
                for path, data in (
                    (root / "objects" / key, BODY),
                    (root / "meta" / f"{key}.json", META.encode()),
                ):
                    if path.parent not in made:
                        path.parent.mkdir(parents=True, exist_ok=True)
                        made.add(path.parent)
                    path.write_bytes(data)
            if sync:
                os.sync()

        await asyncio.to_thread(write_all)
        return
    assert isinstance(storage, S3Storage)
    gate = asyncio.Semaphore(PUT_CONCURRENCY)
    client, bucket = storage._client, storage._bucket

    async def put(key: str) -> None:
        async with gate:
            await client.put_object(Bucket=bucket, Key=key, Body=BODY)

    await asyncio.gather(*(put(key) for key in keys))


async def add_rows(resources: Resources, population: Population) -> None:
    """The rows, bulk-inserted with SQLAlchemy core (executemany in chunks)."""
    then = utcnow() - dt.timedelta(days=1)

    def row(key: str, status: UploadStatus) -> dict[str, Any]:
        return {
            "id": uuid.uuid4(),
            "owner_id": key.split("/")[1],
            "purpose": "attachment",
            "file_key": key,
            "filename": "f.txt",
            "content_type": "text/plain",
            "size_bytes": len(BODY),
            "sha256": None,
            "status": status,
            "rejection_code": "bad_type" if status is UploadStatus.REJECTED else None,
            "created_at": then,
            "url_expires_at": then,
            "confirmed_at": None if status is UploadStatus.REJECTED else then,
            "deleted_at": then if status is UploadStatus.DELETED else None,
        }

    rows = (
        [row(key, UploadStatus.CONFIRMED) for key in population.confirmed]
        + [row(key, UploadStatus.REJECTED) for key in population.rejected]
        + [row(key, UploadStatus.DELETED) for key in population.deleted]
    )
    async with resources.session_factory() as session, session.begin():
        for start in range(0, len(rows), 5000):
            await session.execute(insert(Upload), rows[start : start + 5000])
    async with resources.engine.connect() as connection:
        await connection.execute(text("ANALYZE uploads"))


# --- counting ------------------------------------------------------------------


@dataclass
class Counts:
    storage: collections.Counter[str] = field(default_factory=collections.Counter)
    db: collections.Counter[str] = field(default_factory=collections.Counter)
    sessions: int = 0

    @property
    def requests(self) -> int:
        return sum(self.storage.values())

    @property
    def queries(self) -> int:
        return sum(self.db.values())


class Probe:
    """Counts what a variant sends to storage and to the database."""

    def __init__(self, resources: Resources) -> None:
        self.counts = Counts()
        # Called after every page the storage yields (the live-memory sampler).
        self.on_page: Callable[[], None] | None = None
        # The last page lookup as sent to the database, to EXPLAIN it afterwards.
        self.lookup: tuple[str, Any] | None = None
        engine = resources.engine.sync_engine
        event.listen(engine, "before_cursor_execute", self._before)
        # A session takes a pooled connection: a pre-ping, BEGIN and ROLLBACK
        # or COMMIT go with it, which before_cursor_execute does not see.
        event.listen(engine.pool, "checkout", self._checkout)
        storage = resources.storage
        if isinstance(storage, S3Storage):
            storage._client.meta.events.register("before-send.s3", self._on_send)
        self._wrap(storage, count_calls=isinstance(storage, LocalStorage))

    def reset(self) -> Counts:
        counts, self.counts = self.counts, Counts()
        return counts

    def _before(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        lowered = " ".join(statement.lower().split())
        kind = next((name for name, marker in STATEMENT_KINDS if marker in lowered), "other")
        self.counts.db[kind] += 1
        if kind == "page lookup":
            self.lookup = (statement, parameters)

    def _checkout(self, *_: Any) -> None:
        self.counts.sessions += 1

    def _on_send(self, event_name: str, **_: Any) -> None:
        self.counts.storage[event_name.rsplit(".", 1)[-1]] += 1

    def _wrap(self, storage: Storage, *, count_calls: bool) -> None:
        pages, delete_many, delete = storage.list_pages, storage.delete_many, storage.delete

        async def counted_pages(*args: Any, **kwargs: Any) -> AsyncIterator[list[ListedObject]]:
            async for page in pages(*args, **kwargs):
                if count_calls:
                    self.counts.storage["ListObjectsV2"] += 1
                if self.on_page is not None:
                    self.on_page()
                yield page

        async def counted_delete_many(keys: list[str]) -> None:
            if count_calls:
                self.counts.storage["DeleteObjects"] += 1
            await delete_many(keys)

        async def counted_delete(key: str) -> None:
            if count_calls:
                self.counts.storage["DeleteObject"] += 1
            await delete(key)

        storage.list_pages = counted_pages  # type: ignore[method-assign]
        storage.delete_many = counted_delete_many  # type: ignore[method-assign]
        storage.delete = counted_delete  # type: ignore[method-assign]


# --- the variants ----------------------------------------------------------------


async def bare_listing(storage: Storage) -> int:
    seen = 0
    async for page in storage.list_pages(start_after=_LISTING_START):
        seen += len(page)
    return seen


async def bare_deletion(storage: Storage, keys: list[str]) -> None:
    """The orphans deleted as cleanup deletes them (batches, as many in flight), nothing else."""
    gate = asyncio.Semaphore(_DELETES_IN_FLIGHT)

    async def delete(batch: list[str]) -> None:
        async with gate:
            await storage.delete_many(batch)

    await asyncio.gather(
        *(
            delete(keys[start : start + DELETE_BATCH_SIZE])
            for start in range(0, len(keys), DELETE_BATCH_SIZE)
        )
    )


async def collect_keys(storage: Storage) -> list[str]:
    """The tutorial's first step: every key of the bucket in one list."""
    keys: list[str] = []
    async for page in storage.list_pages(start_after=_LISTING_START):
        keys.extend(listed.key for listed in page)
    return keys


async def tutorial_cleanup(resources: Resources) -> int:
    """The usual tutorial: list everything, then check and delete key by key."""
    keys = await collect_keys(resources.storage)
    deleted = 0
    async with resources.session_factory() as session:
        for key in keys:
            status = await session.scalar(select(Upload.status).where(Upload.file_key == key))
            if status is None or status in FINISHED:
                await resources.storage.delete(key)
                deleted += 1
    return deleted


def cpu_seconds() -> collections.Counter[str]:
    """CPU time used so far: this process (all its threads), the children it
    waited for (the local backend's `rm`), and every PostgreSQL process."""
    own = os.times()
    used: collections.Counter[str] = collections.Counter(
        {"this process": own.user + own.system, "rm": own.children_user + own.children_system}
    )
    ticks = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            line = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name, _, rest = line.partition(" (")[2].rpartition(") ")
        if name == "postgres":
            fields = rest.split()
            used["PostgreSQL"] += (int(fields[11]) + int(fields[12])) / ticks
    return used


async def timed_cpu(
    run: Callable[[], Awaitable[T]],
) -> tuple[float, collections.Counter[str], T]:
    """Wall time, CPU seconds by process (see cpu_seconds) and result of one call."""
    before = cpu_seconds()
    elapsed, result = await timed(run)
    used = cpu_seconds()
    used.subtract(before)
    return elapsed, used, result


async def timed(run: Callable[[], Awaitable[T]]) -> tuple[float, T]:
    start = time.perf_counter()
    result = await run()
    return time.perf_counter() - start, result


async def traced_peak(run: Callable[[], Awaitable[Any]]) -> float:
    """tracemalloc's peak (MiB) over one call: the most it allocated at once, garbage included."""
    gc.collect()
    tracemalloc.start()
    try:
        await run()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


async def live_high_water(probe: Probe, run: Callable[[], Awaitable[Any]]) -> float:
    """The most memory (MiB) a call holds, sampled at every listing page.

    Each sample follows a full ``gc.collect()``: garbage merely waiting for
    the collector is not held.
    """
    high = 0

    def sample() -> None:
        nonlocal high
        gc.collect()
        high = max(high, tracemalloc.get_traced_memory()[0])

    gc.collect()
    probe.on_page = sample
    tracemalloc.start()
    try:
        await run()
        sample()
    finally:
        tracemalloc.stop()
        probe.on_page = None
    return high / 2**20


async def explain_lookup(resources: Resources, probe: Probe) -> str:
    """The plan PostgreSQL runs for a page lookup, as cleanup sent it, and its execution time."""
    assert probe.lookup is not None
    statement, parameters = probe.lookup
    async with resources.engine.connect() as connection:
        result = await connection.exec_driver_sql(
            "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + statement, parameters
        )
        plan = [str(row[0]) for row in result]
    nodes = [
        line.strip().removeprefix("->  ").split(" (actual")[0]
        for line in plan
        if "Scan" in line or "Join" in line or "Loop" in line
    ]
    executed = next((line for line in plan if line.startswith("Execution Time")), "")
    return " → ".join(nodes) + f" ({executed.lower()})"


# --- one bucket ----------------------------------------------------------------------


@dataclass
class Timings:
    """Interleaved rounds, one state of the orphans."""

    state: str
    listing: list[float] = field(default_factory=list)
    cleanup: list[float] = field(default_factory=list)
    dry: list[float] = field(default_factory=list)
    deletion: list[float] = field(default_factory=list)
    listing_cpu: list[collections.Counter[str]] = field(default_factory=list)
    cleanup_cpu: list[collections.Counter[str]] = field(default_factory=list)

    def ratio(self, variant: list[float]) -> float:
        """The median over rounds of variant / bare listing, each pair from one round."""
        return statistics.median(v / b for v, b in zip(variant, self.listing, strict=True))

    def median(self, variant: list[float]) -> float:
        return statistics.median(variant)


@dataclass
class Result:
    backend: str
    keys: int
    orphans: int
    timings: list[Timings]
    list_counts: Counts
    ours_counts: Counts
    base_time: float
    base_counts: Counts
    ours_peak: float
    ours_live: float
    list_peak: float
    base_peak: float
    plan: str

    @property
    def pages(self) -> int:
        return self.list_counts.storage["ListObjectsV2"]

    def bound(self) -> int:
        return math.ceil(self.keys / KEYS_PER_REQUEST) + math.ceil(self.orphans / KEYS_PER_REQUEST)


async def measure(backend: str, total: int, database_url: str, extra: dict[str, Any]) -> Result:
    with TemporaryDirectory(prefix="cleanup-bench-") as tmp:
        root = Path(tmp) / "storage"
        config = settings(database_url=database_url, local_storage_dir=root, **extra)
        try:
            async with open_resources(config) as resources:
                return await _measure(backend, total, resources, root)
        finally:
            async with open_resources(config) as resources, resources.engine.begin() as conn:
                await conn.execute(text("TRUNCATE uploads, cleanup_runs"))
                await conn.execute(text("DELETE FROM leases WHERE name <> 'cleanup'"))


async def _measure(backend: str, total: int, resources: Resources, root: Path) -> Result:
    name = f"{backend} {total:,}"
    storage = resources.storage
    local = isinstance(storage, LocalStorage)
    await storage.initialize(cors_origins=[])
    population = make_population(total)
    orphans = population.orphans
    start = time.perf_counter()
    await put_objects(storage, root, population.keys, sync=True)
    await add_rows(resources, population)
    log(f"{name}: populated in {time.perf_counter() - start:.1f} s")
    probe = Probe(resources)

    def cleanup(
        *, dry_run: bool = False, older_than: dt.timedelta = dt.timedelta(0), later: bool = True
    ) -> Awaitable[CleanupReport]:
        # Two days on, every object is past the cutoff (and so, on S3, is
        # any multipart upload begun before the last check: every run lists them).
        return run_cleanup(
            resources.session_factory,
            storage,
            older_than=older_than,
            dry_run=dry_run,
            now=utcnow() + dt.timedelta(days=2) if later else None,
        )

    async def refill(state: str = ON_DISK) -> None:
        await put_objects(storage, root, orphans, sync=state == ON_DISK)

    # Warm-up (imports, statement caches, prepared statements, the paginator
    # model), so that no timed variant pays for it. A dry run deletes nothing.
    warm = await cleanup(dry_run=True)
    assert warm.deleted == len(orphans), warm

    timings = [Timings(ON_DISK), Timings(IN_CACHE)] if local else [Timings(ON_DISK)]
    list_counts = ours_counts = Counts()
    for timing in timings:
        for round_ in range(ROUNDS):
            if round_ or timing is not timings[0]:
                await refill(timing.state)
            probe.reset()
            list_time, list_cpu, listed = await timed_cpu(lambda: bare_listing(storage))
            list_counts = probe.reset()
            assert listed == total, (listed, total)
            ours_time, ours_cpu, report = await timed_cpu(cleanup)
            counts = probe.reset()
            assert report.outcome == "done", report
            assert report.scanned == total and report.deleted == len(orphans), report
            if ours_counts.requests:
                assert counts.storage == ours_counts.storage and counts.db == ours_counts.db
            ours_counts = counts
            await refill(timing.state)
            dry_time, dry = await timed(lambda: cleanup(dry_run=True))
            assert dry.deleted == len(orphans), dry
            deletion_time, _ = await timed(lambda: bare_deletion(storage, orphans))
            timing.listing.append(list_time)
            timing.cleanup.append(ours_time)
            timing.dry.append(dry_time)
            timing.deletion.append(deletion_time)
            timing.listing_cpu.append(list_cpu)
            timing.cleanup_cpu.append(ours_cpu)
            log(
                f"{name}, orphans {timing.state}, round {round_ + 1}: bare listing "
                f"{list_time:.2f} s, cleanup {ours_time:.2f} s, dry run {dry_time:.2f} s, "
                f"bare deletion {deletion_time:.2f} s"
            )

    plan = await explain_lookup(resources, probe)
    await refill()
    probe.reset()
    base_time, base_deleted = await timed(lambda: tutorial_cleanup(resources))
    base_counts = probe.reset()
    assert base_deleted == len(orphans), base_deleted
    log(f"{name}: tutorial baseline {base_time:.2f} s")

    # Memory, in runs of their own: tracemalloc slows Python down.
    await refill()
    ours_peak = await traced_peak(cleanup)
    await refill()
    ours_live = await live_high_water(probe, cleanup)
    list_peak = await traced_peak(lambda: bare_listing(storage))
    # The baseline's peak is at least the key list it builds before its loop:
    # measured on that step alone, to spare a second slow run.
    base_peak = await traced_peak(lambda: collect_keys(storage))
    # Every orphan is gone and nothing confirmed was lost.
    assert sorted(await collect_keys(storage)) == sorted(population.confirmed)
    log(f"{name}: memory measured")

    return Result(
        backend=backend,
        keys=total,
        orphans=len(orphans),
        timings=timings,
        list_counts=list_counts,
        ours_counts=ours_counts,
        base_time=base_time,
        base_counts=base_counts,
        ours_peak=ours_peak,
        ours_live=ours_live,
        list_peak=list_peak,
        base_peak=base_peak,
        plan=plan,
    )


# --- the report --------------------------------------------------------------------


def _cpu_floor(t: Timings) -> str:
    """What the CPU the parts need says about the least wall time 2 cores allow."""
    cores = os.cpu_count() or 1
    parts = ("this process", "rm", "PostgreSQL")
    cleanup = {p: statistics.median(c[p] for c in t.cleanup_cpu) for p in parts}
    listing = statistics.median(c["this process"] for c in t.listing_cpu)
    total = sum(cleanup.values())
    floor = statistics.median(
        sum(c[p] for p in parts) / cores / wall
        for c, wall in zip(t.cleanup_cpu, t.listing, strict=True)
    )
    spent = ", ".join(f"{p} {cleanup[p]:.2f} s" for p in parts)
    return (
        f"CPU, orphans {t.state}: the bare listing {listing:.2f} s (this process); cleanup "
        f"{spent}, {total:.2f} s in all, which {cores} cores need at least "
        f"{total / cores:.2f} s to give: {floor:.2f}× the bare listing before any waiting"
    )


def _breakdown(counter: collections.Counter[str]) -> str:
    return ", ".join(f"{name} {count}" for name, count in sorted(counter.items()))


def _verdict(ok: bool) -> str:
    return "**holds**" if ok else "**misses**"


def _rounds(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


def machine() -> str:
    cpu = platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


def localstack_version() -> str:
    found = sorted(REPO.glob(".venv-localstack/lib/python*/site-packages/localstack_core-*"))
    return found[0].name.split("-")[1].removesuffix(".dist") if found else "?"


def render(results: list[Result], command: str, postgres: str) -> str:
    time_headers = [
        "backend",
        "keys",
        "orphans",
        "bare listing",
        "uploadsvc cleanup",
        "dry run (no deletions)",
        "bare deletion of the orphans",
        "tutorial baseline",
    ]
    time_rows = []
    for r in results:
        for t in r.timings:
            time_rows.append(
                [
                    r.backend if r.backend == "s3" else f"local, orphans {t.state}",
                    f"{r.keys:,}",
                    f"{r.orphans:,}",
                    f"{t.median(t.listing):.2f} s",
                    f"{t.median(t.cleanup):.2f} s (**{t.ratio(t.cleanup):.2f}×**)",
                    f"{t.median(t.dry):.2f} s ({t.ratio(t.dry):.2f}×)",
                    f"{t.median(t.deletion):.2f} s ({t.ratio(t.deletion):.2f}×)",
                    f"{r.base_time:.2f} s ({r.base_time / t.median(t.listing):.0f}×)"
                    if t is r.timings[0]
                    else "",
                ]
            )
    count_headers = [
        "backend",
        "keys",
        "storage requests: uploadsvc",
        "bound",
        "storage requests: baseline",
        "DB queries: uploadsvc",
        "DB queries: baseline",
        "memory: uploadsvc live / peak",
        "memory: listing peak / baseline key list",
    ]
    count_rows = [
        [
            r.backend,
            f"{r.keys:,}",
            f"**{r.ours_counts.requests}** ({_breakdown(r.ours_counts.storage)})",
            f"≤ {r.bound()}",
            f"{r.base_counts.requests:,} ({_breakdown(r.base_counts.storage)})",
            f"**{r.ours_counts.queries}** ({_breakdown(r.ours_counts.db)})",
            f"{r.base_counts.queries:,}",
            f"**{r.ours_live:.1f}** / {r.ours_peak:.1f} MiB",
            f"{r.list_peak:.1f} / {r.base_peak:.1f} MiB",
        ]
        for r in results
    ]
    lines = []
    for r in results:
        storage = r.ours_counts.storage
        core = storage["ListObjectsV2"] + storage["DeleteObjects"]
        extra = r.ours_counts.requests - core
        lookups = r.ours_counts.db["page lookup"]
        overhead = r.ours_counts.queries - lookups
        requests = (
            f"Storage requests {r.ours_counts.requests} vs bound {r.bound()} → "
            f"{_verdict(r.ours_counts.requests <= r.bound())}"
        )
        if extra:
            others = collections.Counter(
                {k: n for k, n in storage.items() if k not in ("ListObjectsV2", "DeleteObjects")}
            )
            requests += (
                f" (ListObjectsV2 + DeleteObjects: {core}; the other {extra}: {_breakdown(others)})"
            )
        times = []
        for t in r.timings:
            ratio = t.ratio(t.cleanup)
            floor = statistics.median(
                c / max(b, d) for c, b, d in zip(t.cleanup, t.listing, t.deletion, strict=True)
            )
            times.append(
                f"orphans {t.state}: wall time {ratio:.2f}× the bare listing (target ≤ 1.3) → "
                f"{_verdict(ratio <= 1.3)}, {floor:.2f}× the slower of the bare listing and the "
                f"bare deletion; per round: listing {_rounds(t.listing)} s, cleanup "
                f"{_rounds(t.cleanup)} s, dry run {_rounds(t.dry)} s, bare deletion "
                f"{_rounds(t.deletion)} s"
            )
            if r.backend == "local":
                times.append(_cpu_floor(t))
        lines.append(
            f"- **{r.backend}, {r.keys:,} keys** ({r.pages} listing pages). {requests}. "
            f"DB queries: {lookups} page lookups for {r.pages} pages → "
            f"{_verdict(lookups <= r.pages)}, plus {overhead} per run; "
            f"{r.ours_counts.sessions} pooled sessions; a lookup's plan: {r.plan}. "
            + "; ".join(times)
            + "."
        )
    local = sorted((r for r in results if r.backend == "local"), key=lambda r: r.keys)
    if len(local) >= 2:
        small, big = local[0], local[-1]
        growth = big.ours_live / small.ours_live
        raw = big.ours_peak / small.ours_peak
        lines.append(
            f"- **Memory**, local backend, {small.keys:,} → {big.keys:,} keys: the most a cleanup "
            f"run holds, {small.ours_live:.1f} → {big.ours_live:.1f} MiB ({growth:.2f}×) → "
            f"{_verdict(growth <= FLAT)} (flat: within {FLAT}× for "
            f"{big.keys // small.keys}× the keys); tracemalloc's peak, garbage included, "
            f"{small.ours_peak:.1f} → {big.ours_peak:.1f} MiB ({raw:.2f}×). The baseline's "
            f"key list alone: {small.base_peak:.1f} → {big.base_peak:.1f} MiB."
        )
    return (
        "## Cleanup of orphaned objects\n\n"
        f"Command: `make bench` (every benchmark) or `{command}` (this one). "
        f"Machine: {machine()}; LocalStack {localstack_version()} over HTTP and {postgres}, "
        "both on 127.0.0.1 on the same machine as the client. 20 % of the keys are orphans "
        "(half without a row, a quarter `rejected`, a quarter `deleted`), the rest confirmed "
        f"rows; {OBJECTS_PER_FOLDER} objects per `uploads/{{user}}/2026/01/01/` folder; local "
        "objects have their metadata file, so an orphan is two files. Timed runs look two "
        "days ahead (`older_than=0`): every object is past the cutoff.\n\n"
        f"Times are medians of {ROUNDS} interleaved rounds of (bare listing, cleanup, dry "
        "run, bare deletion) on the same bucket, the orphans put back before each run that "
        "deletes; ratios (in brackets) are medians of the per-round ratios to that round's "
        "bare listing. Local orphans are timed *on disk* (written, then `os.sync()`: how a "
        "day-old orphan is) and *in page cache* (written just before the run, not yet "
        "written back). The bare deletion deletes the orphans as cleanup does "
        f"(`delete_many`, batches of 1000, {_DELETES_IN_FLIGHT} in flight) with no listing "
        "and no database. The tutorial baseline runs once.\n\n"
        + table(time_headers, time_rows)
        + "\n\nStorage requests: S3 counted per HTTP request (botocore `before-send`), local "
        "per page pulled and per delete call. DB queries: statements executed "
        "(`before_cursor_execute`). Memory (tracemalloc, in runs of their own): *live* is "
        "the most a cleanup run holds, sampled at every listing page after a full "
        "`gc.collect()`; *peak* is tracemalloc's peak over a run; the baseline's key list "
        "is a lower bound of its peak.\n\n"
        + table(count_headers, count_rows)
        + "\n\nTargets: storage requests ≤ ⌈keys/1000⌉ + ⌈orphans/1000⌉; DB "
        "queries ≤ one per listing page; wall time ≤ 1.3× the bare listing; memory flat.\n\n"
        + "\n".join(lines)
        + "\n\n"
        + NOTES
    )


NOTES = """\
Why the numbers are what they are:

- **Local backend: the target is below what 2 cores allow.** On the local
  backend listing is not waiting on a network but CPU work (a `scandir` and a
  `stat` per object), so the rest of a run cannot hide behind it: the CPU
  lines above add up what each part of a cleanup run used (this process:
  listing, lookups, batching; `rm`: unlinking; PostgreSQL: the lookups), and
  even spread perfectly over this machine's 2 cores that takes longer than
  1.3× the bare listing, before any waiting. On disk, unlinking alone costs
  more CPU than listing (ext4 mounted with `discard` frees each file's blocks
  through its journal), so the bare deletion by itself takes about twice the
  listing. What cleanup controls is how close it stays to the slower of the
  two (the second ratio above): deletions run while the listing goes on,
  several batches at once because concurrent unlinks share journal commits.
  The dry run shows listing plus lookups alone.
- **What a run does to stay close to its listing.** The listing runs in a task
  of its own, two pages ahead. A page is looked up with one statement on one
  autocommit connection (no checkout, ping, BEGIN or ROLLBACK per page): the
  keys go as one array, `unnest(...) WITH ORDINALITY` joined to `uploads` on
  its unique `file_key` index (or a hash join on a small table, as the plan
  shows), and only the keys that may go come back, as positions in the page.
  Up to 4 delete batches are in flight. The local backend deletes a batch with
  one `rm` process: unlinking in a worker thread beside the listing thread
  passes the GIL at every file, which made a whole run about twice as slow.
- **S3 requests.** Only listing pages and delete batches. Incomplete
  multipart uploads are not listed: the service writes a row naming the key
  before it starts one and removes it when the upload ends
  (`open_multipart_uploads`), so a run asks storage about the keys of rows
  older than its cutoff only (none here: one DB query, no storage request).
"""


async def postgres_version(database_url: str) -> str:
    config = settings(database_url=database_url)
    async with open_resources(config) as resources, resources.engine.connect() as connection:
        version = await connection.scalar(text("SHOW server_version"))
    return f"PostgreSQL {str(version).split()[0]}"


async def main(quick: bool) -> str:
    s3_size = 1_000 if quick else 10_000
    local_sizes = [1_000, 10_000] if quick else [10_000, 100_000]
    started = time.perf_counter()
    results = []
    async with scratch_database() as database_url:
        postgres = await postgres_version(database_url)
        with localstack() as server:
            results.append(await measure("s3", s3_size, database_url, s3_settings(server)))
        for size in local_sizes:
            results.append(await measure("local", size, database_url, {"storage_backend": "local"}))
    log(f"cleanup benchmark done in {time.perf_counter() - started:.0f} s")
    command = "uv run python -m bench.cleanup_bench" + (" --quick" if quick else "")
    return render(results, command, postgres)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The cleanup benchmark.")
    parser.add_argument("--quick", action="store_true", help="small sizes; BENCHMARKS.md untouched")
    arguments = parser.parse_args()
    section = asyncio.run(main(arguments.quick))
    print(section)
    if not arguments.quick:
        write_section("cleanup", section)
