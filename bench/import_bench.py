"""Importing a large generated Open Event archive.

Side by side in one run, on PostgreSQL and the local storage backend:
- read + validate only: open and check the archive, parse its JSON and map it
  (the floor: an import must at least do this);
- uploadsvc's import job (``run_import``: the same, plus bulk inserts in one
  transaction);
- the baseline of the original Open Event importer: one ``session.add`` and
  one commit per row.
The job's CPU is measured too: this process's (the parse thread and the event
loop) and that of the database's PostgreSQL backends (from /proc, when
PostgreSQL runs on this machine). Then the time from enqueue to start on a real arq worker, and a second size
(10× the sessions) to show the job's time growing linearly and its memory
staying bounded. Memory is measured two ways: tracemalloc's peak of the
Python heap during the job (in this process), and the peak RSS (VmHWM) of a
child process that runs the same job the way a worker does.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
import tracemalloc
import uuid
import zipfile
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from sqlalchemy import insert, select, text

from bench.common import REPO, scratch_database, settings, table, write_section
from uploadsvc.db import utcnow
from uploadsvc.models.events import (
    Event,
    EventSession,
    ImportJob,
    ImportState,
    Microlocation,
    Speaker,
    Track,
    session_speakers,
)
from uploadsvc.openevent.archive import ArchiveLimits, OpenEventArchive
from uploadsvc.openevent.mapping import ImportStream
from uploadsvc.resources import Resources, open_resources
from uploadsvc.services.imports import run_import

REDIS_URL = "redis://127.0.0.1:6379/12"
# Timed rounds of read + validate and of the job, per size (medians reported).
ROUNDS = 5


def generate(sessions: int, speakers: int) -> bytes:
    tracks = max(sessions // 100, 1)
    rooms = max(sessions // 200, 1)
    # Both sides of the links, as real exports have them: a session lists its
    # speakers, a speaker lists its sessions.
    named: list[list[int]] = [[] for _ in range(speakers + 1)]
    session_speakers = {}
    for n in range(1, sessions + 1):
        pair = sorted({n % speakers + 1, (n * 7) % speakers + 1})
        session_speakers[n] = pair
        for speaker in pair:
            named[speaker].append(n)
    data = {
        "event": {"id": 1, "name": f"Generated {sessions}", "starts-at": "2026-06-01T09:00:00Z"},
        "tracks": [
            {"id": t, "name": f"Track {t}", "color": "#123456"} for t in range(1, tracks + 1)
        ],
        "microlocations": [{"id": r, "name": f"Room {r}", "floor": 1} for r in range(1, rooms + 1)],
        "speakers": [
            {
                "id": s,
                "name": f"Speaker {s}",
                "email": f"s{s}@example.org",
                "organisation": "Org",
                "short-biography": "Bio " * 20,
                "sessions": [{"id": n, "title": f"Session {n}"} for n in named[s]],
            }
            for s in range(1, speakers + 1)
        ],
        "sessions": [
            {
                "id": n,
                "title": f"Session {n}",
                "short-abstract": "Abstract " * 30,
                "starts-at": "2026-06-01T10:00:00Z",
                "ends-at": "2026-06-01T10:30:00Z",
                "track": {"id": n % tracks + 1, "name": f"Track {n % tracks + 1}"},
                "microlocation": {"id": n % rooms + 1, "name": f"Room {n % rooms + 1}"},
                "speakers": [{"id": s} for s in session_speakers[n]],
            }
            for n in range(1, sessions + 1)
        ],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in data.items():
            archive.writestr(name, json.dumps(content))
    return buffer.getvalue()


def json_bytes(data: bytes) -> int:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return sum(info.file_size for info in archive.infolist())


def stream_of(archive: OpenEventArchive) -> ImportStream:
    return ImportStream(
        archive, event_id=uuid.uuid4(), owner_id="bench", import_job_id=uuid.uuid4()
    )


def read_and_validate(path: Path) -> int:
    with OpenEventArchive.open(path) as archive:
        stream = stream_of(archive)
        for _ in stream.batches():
            pass
    return stream.counts["sessions"]


def kept_between_batches(path: Path) -> int:
    """The most the import holds from one batch to the next (its id maps, the
    speaker-side links waiting for their sessions, its warnings, the parser's
    buffer): traced memory each time a batch has been handed over and dropped."""
    kept = 0
    tracemalloc.start()
    try:
        with OpenEventArchive.open(path) as archive:
            stream = stream_of(archive)
            for batch in stream.batches():
                del batch
                kept = max(kept, tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    assert stream.counts["sessions"] > 0
    return kept


def all_rows(path: Path, job_id: uuid.UUID) -> dict[str, list[dict[str, Any]]]:
    """Every row of the archive at once (for the baseline, which adds them one by one)."""
    rows: dict[str, list[dict[str, Any]]] = {}
    with OpenEventArchive.open(path) as archive:
        stream = ImportStream(
            archive, event_id=uuid.uuid4(), owner_id="bench", import_job_id=job_id
        )
        for batch in stream.batches():
            for name, batch_rows in batch.rows.items():
                rows.setdefault(name, []).extend(batch_rows)
    return rows


async def new_job(resources: Resources, key: str) -> uuid.UUID:
    job_id = uuid.uuid4()
    async with resources.session_factory() as session, session.begin():
        await session.execute(
            insert(ImportJob).values(
                id=job_id,
                owner_id="bench",
                source_key=key,
                state=ImportState.PENDING,
                attempts=0,
                created_at=utcnow(),
                heartbeat_at=utcnow(),
            )
        )
    return job_id


async def row_by_row(resources: Resources, path: Path) -> int:
    """The original importer's way: every row added and committed on its own.
    Returns the number of commits."""
    job_id = await new_job(resources, "baseline")
    rows = all_rows(path, job_id)
    commits = 1
    async with resources.session_factory() as session:
        session.add(Event(**rows["events"][0]))
        await session.commit()
        for model, name in (
            (Track, "tracks"),
            (Microlocation, "microlocations"),
            (Speaker, "speakers"),
            (EventSession, "sessions"),
        ):
            for row in rows.get(name, []):
                session.add(model(**row))
                await session.commit()
                commits += 1
        for link in rows.get("session_speakers", []):
            await session.execute(insert(session_speakers).values(**link))
            await session.commit()
            commits += 1
    return commits


async def clear(resources: Resources) -> None:
    async with resources.engine.begin() as connection:
        await connection.execute(text("TRUNCATE uploads, import_jobs CASCADE"))


async def enqueue_to_start(database_url: str, storage_dir: Path, key: str) -> list[float]:
    """Milliseconds from enqueue to the job starting, on a real arq worker."""
    from redis.asyncio import Redis

    from uploadsvc.workers.settings import create_worker

    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    config = settings(database_url=database_url, local_storage_dir=storage_dir, redis_url=REDIS_URL)
    latencies = []
    async with open_resources(config) as resources:
        worker = create_worker(config, handle_signals=False)
        running = asyncio.create_task(worker.main())
        await asyncio.sleep(1)  # the worker is up and polling
        for _ in range(10):
            job_id = await new_job(resources, key)
            enqueued = utcnow()
            await resources.jobs.enqueue_import(job_id)
            started = None
            for _ in range(400):
                async with resources.session_factory() as session:
                    started = await session.scalar(
                        select(ImportJob.started_at).where(ImportJob.id == job_id)
                    )
                if started is not None:
                    break
                await asyncio.sleep(0.005)
            assert started is not None
            latencies.append((started - enqueued).total_seconds() * 1000)
            # An idle worker for the next one: wait until this job has finished.
            for _ in range(600):
                async with resources.session_factory() as session:
                    state = await session.scalar(
                        select(ImportJob.state).where(ImportJob.id == job_id)
                    )
                if state in (ImportState.SUCCESS, ImportState.FAILURE):
                    break
                await asyncio.sleep(0.02)
        running.cancel()
        await worker.close()
        await clear(resources)
    await redis.flushdb()
    await redis.aclose()
    return latencies


def status_kib(field: str) -> int:
    """A line of /proc/self/status (VmRSS, VmHWM), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


async def rss_child(database_url: str, storage_dir: Path, key: str, warmup_key: str) -> None:
    """In a child process: one import, as a worker runs it; prints its RSS figures.

    A small import runs first, so that what any first job loads (modules,
    libmagic, asyncpg's type cache, the thread pool) is part of the idle
    figure and not of the job's growth.
    """
    config = settings(database_url=database_url, local_storage_dir=storage_dir)
    async with open_resources(config) as resources:
        await run_import(resources, await new_job(resources, warmup_key))
        job_id = await new_job(resources, key)
        idle = status_kib("VmRSS")
        await run_import(resources, job_id)
        peak = status_kib("VmHWM")
        async with resources.session_factory() as session:
            job = await session.get(ImportJob, job_id)
            assert job is not None and job.state is ImportState.SUCCESS, job and job.error
    print(json.dumps({"idle_kib": idle, "peak_kib": peak}))


async def worker_rss(
    database_url: str, storage_dir: Path, key: str, warmup_key: str
) -> dict[str, float]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.import_bench",
        "--rss-child",
        database_url,
        str(storage_dir),
        key,
        warmup_key,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await child.communicate()
    assert child.returncode == 0, out
    figures = json.loads(out.decode().strip().splitlines()[-1])
    return {
        "idle": figures["idle_kib"] / 1024,
        "peak": figures["peak_kib"] / 1024,
    }


def store(storage_dir: Path, key: str, data: bytes) -> None:
    target = storage_dir / "objects" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


async def measure(
    database_url: str, sessions: int, speakers: int, baseline: bool
) -> dict[str, Any]:
    with TemporaryDirectory() as tmp:
        storage_dir = Path(tmp) / "storage"
        config = settings(database_url=database_url, local_storage_dir=storage_dir)
        data = generate(sessions, speakers)
        path = Path(tmp) / "archive.zip"
        path.write_bytes(data)
        key, warmup_key = "imports/bench/archive.zip", "imports/bench/warmup.zip"
        store(storage_dir, key, data)
        store(storage_dir, warmup_key, generate(50, 20))
        result: dict[str, Any] = {
            "sessions": sessions,
            "speakers": speakers,
            "zip_mib": len(data) / 2**20,
            "json_mib": json_bytes(data) / 2**20,
        }
        del data
        async with open_resources(config) as resources:
            # Rounds interleave the two, so that a busy moment of the machine
            # falls on both; the medians are compared.
            reads, jobs, python_cpu, postgres = [], [], [], []
            for _ in range(ROUNDS):
                start = time.perf_counter()
                await asyncio.to_thread(read_and_validate, path)
                reads.append(time.perf_counter() - start)
                job_id = await new_job(resources, key)
                postgres_before = await postgres_cpu(resources)
                cpu = time.process_time()
                start = time.perf_counter()
                await run_import(resources, job_id)
                jobs.append(time.perf_counter() - start)
                python_cpu.append(time.process_time() - cpu)
                postgres_after = await postgres_cpu(resources)
                if postgres_before is not None and postgres_after is not None:
                    postgres.append(postgres_after - postgres_before)
                async with resources.session_factory() as session:
                    job = await session.get(ImportJob, job_id)
                    assert job is not None and job.state is ImportState.SUCCESS, job and job.error
                await clear(resources)
            result["read"] = statistics.median(reads)
            result["job"] = statistics.median(jobs)
            result["python_cpu"] = statistics.median(python_cpu)
            result["postgres_cpu"] = statistics.median(postgres) if postgres else None
            # Memory in runs of their own: tracemalloc slows Python down.
            job_id = await new_job(resources, key)
            tracemalloc.start()
            await run_import(resources, job_id)
            result["peak_mib"] = tracemalloc.get_traced_memory()[1] / 2**20
            tracemalloc.stop()
            await clear(resources)
            result["kept_mib"] = await asyncio.to_thread(kept_between_batches, path) / 2**20
            result["rss"] = await worker_rss(database_url, storage_dir, key, warmup_key)
            await clear(resources)
            if baseline:
                start = time.perf_counter()
                result["commits"] = await row_by_row(resources, path)
                result["baseline"] = time.perf_counter() - start
                await clear(resources)
            result["latency_ms"] = (
                await enqueue_to_start(database_url, storage_dir, key) if baseline else None
            )
    return result


async def postgres_cpu(resources: Resources) -> float | None:
    """CPU seconds used so far by the backends of this database (None when
    PostgreSQL runs elsewhere or its /proc entries cannot be read)."""
    async with resources.engine.connect() as connection:
        pids = (
            await connection.execute(
                text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            )
        ).scalars()
        try:
            ticks = 0
            for pid in pids:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                ticks += int(fields[11]) + int(fields[12])  # utime + stime
        except OSError:
            return None
    return ticks / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


# Where the 5,000-session job's time goes: a profile made apart from this run
# (per-phase timers, cProfile of the event loop, gc callbacks, the backend's CPU
# from /proc, and experiments on a scratch database). Kept here so that the
# section carries it; redo it when the importer changes.
PROFILE = """\
Profile of the 5,000-session job (separate runs on this machine, per-phase timers, cProfile,
gc callbacks, CPU of the PostgreSQL backend from /proc):

- Before (0.50 s): 96 % in the write loop — awaiting COPY 0.42 s (sessions 0.18, links 0.17,
  speakers 0.03), awaiting the parse thread 0.04 s, progress writes 5 ms; job start,
  download, archive open and the final commit 10 ms together; no media in this archive.
  CPU: Python 0.37 s — parsing and mapping 0.24 s, and one full garbage collection of the
  heap per import, 0.13 s (rows and id maps held uuid.UUID objects, which the collector
  tracks; 40,000 of them lived long enough to be promoted); PostgreSQL 0.24 s, of which
  the foreign-key checks 0.18 s (each inserted row's references are looked up: 37,000
  lookups of about 4.5 µs; all referenced columns are primary keys, so indexed).
- Changed: ids travel as text (never tracked by the collector; asyncpg encodes them in C),
  media keys are built only for media, fewer steps per record. A full collection now
  comes about once in five such imports (twice in a 50,000-session one); parsing and
  mapping take 0.145 s of CPU. The job is now bound by PostgreSQL (0.22 s of backend CPU,
  three quarters of it foreign-key checks), in series with the event loop's 0.05 s of CPU
  (building and encoding the COPY records).
- Measured, no gain: batches of 500, 2,000 or 4,000 rows instead of 1,000 (same within
  noise); the foreign keys DEFERRABLE INITIALLY DEFERRED (the same checks, run at commit
  instead: 0.15 s of a 0.25 s write, against 0.27 s checked at once); a shorter GIL switch
  interval. With the foreign-key checks switched off (an experiment only:
  session_replication_role=replica) the job took 0.24–0.33 s. They stay: each guards a
  reference after the import too (cascades when an event goes, no link to a missing session
  or speaker), and PostgreSQL checks every row of every statement, so only fewer
  constraints would do fewer checks.
"""


def report(results: list[dict[str, Any]], command: str, load: tuple[str, str]) -> str:
    rows, verdicts = [], []
    for r in results:
        baseline = r.get("baseline")
        rss = r["rss"]
        rows.append(
            [
                r["sessions"],
                r["speakers"],
                f"{r['zip_mib']:.1f} MiB ({r['json_mib']:.0f} MiB JSON)",
                f"{r['read']:.2f} s",
                f"{r['job']:.2f} s ({r['job'] / r['read']:.2f}× read)",
                f"{baseline:.1f} s (job = 1/{baseline / r['job']:.0f})" if baseline else "not run",
                f"{r['peak_mib']:.1f} MiB",
                f"{r['kept_mib']:.1f} MiB",
                f"{rss['peak']:.0f} MiB (+{rss['peak'] - rss['idle']:.0f})",
            ]
        )
        postgres = r["postgres_cpu"]
        verdicts.append(
            f"- {r['sessions']} sessions: the job's CPU (median round) — this process (parse "
            f"thread and event loop) {r['python_cpu']:.2f} s, the PostgreSQL backends "
            + (f"{postgres:.2f} s" if postgres is not None else "not measured")
            + f", for {r['job']:.2f} s of wall time"
        )
        if baseline:
            lat = r["latency_ms"]
            verdicts += [
                f"- {r['sessions']} sessions: the job takes 1/{baseline / r['job']:.0f} of the "
                f"row-by-row baseline (target ≤ 1/50) → "
                f"{'holds' if r['job'] * 50 <= baseline else 'misses'} (the baseline is "
                f"{r['commits']} commits of one row, {baseline / r['commits'] * 1000:.2f} ms "
                "each: it follows the disk's fsync latency, the job hardly does)",
                f"- {r['sessions']} sessions: the job takes {r['job'] / r['read']:.2f}× the time to "
                f"read and validate the archive (target ≤ 3×) → "
                f"{'holds' if r['job'] <= 3 * r['read'] else 'misses'}",
                f"- enqueue → start on an arq worker: median {statistics.median(lat):.0f} ms, "
                f"max {max(lat):.0f} ms over {len(lat)} jobs (target < 100 ms) → "
                f"{'holds' if max(lat) < 100 else 'misses'}",
            ]
    if len(results) == 2:
        small, big = results
        scale = big["sessions"] / small["sessions"]
        growth = (big["job"] / small["job"]) / scale
        working = [r["peak_mib"] - r["kept_mib"] for r in results]
        per_record = (
            (big["kept_mib"] - small["kept_mib"])
            * 2**20
            / (big["sessions"] + big["speakers"] - small["sessions"] - small["speakers"])
        )
        rss_growth = [r["rss"]["peak"] - r["rss"]["idle"] for r in results]
        limits = ArchiveLimits()
        verdicts += [
            f"- {big['sessions']} vs {small['sessions']} sessions: time per session grows "
            f"{growth:.2f}× (1.0 = linear) → {'holds' if growth <= 1.2 else 'misses'} (≤ 1.2)",
            f"- memory, ×{scale:.0f} the sessions and ×{big['json_mib'] / small['json_mib']:.0f} "
            f"the JSON: Python heap peak {small['peak_mib']:.1f} → {big['peak_mib']:.1f} MiB; "
            f"of it, held between batches (id maps, pending links, parser buffer) "
            f"{small['kept_mib']:.1f} → {big['kept_mib']:.1f} MiB "
            f"(≈ {per_record:.0f} bytes per session or speaker), the rest — the batch being "
            f"written, the one being parsed, their COPY records — "
            f"{working[0]:.1f} → {working[1]:.1f} MiB; "
            f"worker RSS growth {rss_growth[0]:.0f} → {rss_growth[1]:.0f} MiB",
            f"- the bound: the batches in hand stay flat whatever the size; what grows is "
            f"held between batches, ≈ {per_record:.0f} bytes per record, and an archive may "
            f"hold at most {limits.max_records:,} records (`ArchiveLimits.max_records`): "
            f"≈ {per_record * limits.max_records / 2**20:.0f} MiB at most, plus one record "
            f"(≤ {limits.max_record_bytes // 2**20} MiB of JSON). Before streaming, the heap "
            "peak followed the JSON: 19 → 194 MiB for these two sizes (the previous run, "
            "with links listed on the sessions' side only).",
        ]
    headers = [
        "sessions",
        "speakers",
        "archive",
        "read + validate",
        "uploadsvc job",
        "row-by-row baseline",
        "heap peak (job)",
        "held between batches",
        "worker peak RSS (growth)",
    ]
    return (
        "## Event import\n\n"
        f"Command: `{command}` (PostgreSQL 15 and the local storage backend on this machine, "
        "2 cores shared with other work: load average "
        f"{load[0]} before, {load[1]} after; Redis for the enqueue → start measurement). "
        "Generated kebab-case archive: sessions with a track, a room and two speakers each, "
        "speakers listing their sessions (both sides of the links, as real exports have "
        "them); 1 track per 100 sessions, 1 room per 200. Read + validate and the job: "
        f"median of {ROUNDS} interleaved rounds.\n\n"
        "Heap peak: tracemalloc's peak of Python allocations during the job, in the "
        "benchmark's process. Held between batches: the most the import holds while no "
        "batch is in hand — id maps, links waiting for their session, the parser's "
        "buffer (tracemalloc, a read-only pass). Worker peak RSS: "
        "VmHWM of a child process that runs the same job as a worker does, after a small "
        "warm-up import; growth = peak − its RSS just before the job.\n\n"
        + table(headers, rows)
        + "\n\n"
        + "\n".join(verdicts)
        + "\n\n"
        + PROFILE
    )


async def main(quick: bool) -> None:
    sizes = [(500, 200), (5000, 2000)] if quick else [(5000, 2000), (50_000, 20_000)]
    before = load_average()
    results = []
    async with scratch_database() as database_url:
        for index, (sessions, speakers) in enumerate(sizes):
            results.append(await measure(database_url, sessions, speakers, baseline=index == 0))
    command = "uv run python -m bench.import_bench" + (" --quick" if quick else "")
    text_ = report(results, command, (before, load_average()))
    print(text_)
    if not quick:
        write_section("import", text_)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rss-child", nargs=4, metavar=("DATABASE_URL", "DIR", "KEY", "WARMUP"))
    args = parser.parse_args()
    if args.rss_child:
        database_url, directory, key, warmup_key = args.rss_child
        asyncio.run(rss_child(database_url, Path(directory), key, warmup_key))
    else:
        asyncio.run(main(args.quick))
