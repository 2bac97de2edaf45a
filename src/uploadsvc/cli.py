"""The ``uploadsvc`` command (docs/api.md, "Command line").

``dev`` runs everything with zero configuration; ``serve`` runs the API as
the environment configures it; ``migrate`` applies the Alembic migrations;
``token`` mints a development token; ``storage init`` prepares the bucket;
``example-archive`` writes an Open Event archive to try imports with.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from uploadsvc.config import Settings
from uploadsvc.errors import UploadsvcError
from uploadsvc.telemetry import (
    configure_command_logging,
    metrics_shared_by_workers,
    serve_metrics_port,
    uvicorn_logging,
)

if TYPE_CHECKING:
    from uploadsvc.schemas.events import TaskRead
    from uploadsvc.storage.base import StorageSetup

logger = logging.getLogger("uploadsvc")

# `storage init --check` found the bucket set up differently (errors exit 1,
# invalid configuration 2).
DRIFT_EXIT_CODE = 3
# Commands that run with development settings whatever the environment says.
_NO_SECRETS_COMMANDS = frozenset({"dev", "example-archive"})


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        # `dev` is the one command that runs in development (placeholder secrets,
        # docs/api.md "Command line"); every other one is production unless
        # UPLOADSVC_ENV says otherwise. `example-archive` only writes a file:
        # it has no secrets to check.
        settings = (
            Settings(env="development") if args.command in _NO_SECRETS_COMMANDS else Settings()
        )
    except ValidationError as exc:
        # Placeholder secrets outside development end up here: say why, no traceback.
        print(f"uploadsvc: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    configure_command_logging(settings, args.command)
    handler = args.handler
    try:
        result: int = handler(settings, args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # An operator reads one line that says what failed; the traceback is
        # for UPLOADSVC_LOG_LEVEL=DEBUG.
        logger.debug("uploadsvc %s failed", args.command, exc_info=True)
        print(f"uploadsvc {args.command}: {_one_line(exc)}", file=sys.stderr)
        return 1
    return result


def _one_line(exc: Exception) -> str:
    """What went wrong, in one line, with the step that fixes it where we know it."""
    from sqlalchemy.exc import DBAPIError

    if isinstance(exc, UploadsvcError):
        return exc.detail
    if isinstance(exc, DBAPIError):
        # The driver's own words, without SQLAlchemy's SQL echo and help link.
        message = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else str(exc)
        if "no such table" in message or ("relation" in message and "does not exist" in message):
            return f"the database has no schema yet ({message}): run `uploadsvc migrate` first"
        return f"database error: {message}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _version() -> str:
    try:
        return importlib.metadata.version("uploadsvc")
    except importlib.metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uploadsvc", description=__doc__)
    parser.add_argument("--version", action="version", version=f"uploadsvc {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="migrate, prepare storage and run the API (zero config)")
    dev.add_argument("--host", default=None)
    dev.add_argument("--port", type=int, default=None)
    dev.set_defaults(handler=_dev)

    serve = commands.add_parser("serve", help="run the API as the environment configures it")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser("migrate", help="apply the database migrations")
    migrate.set_defaults(handler=_migrate)

    token = commands.add_parser("token", help="print a token the configured secret accepts")
    token.add_argument("--sub", required=True, help="the user id")
    token.add_argument("--admin", action="store_true", help="grant the admin role")
    token.add_argument("--ttl", type=int, default=86400, help="lifetime in seconds")
    token.set_defaults(handler=_token)

    worker = commands.add_parser("worker", help="run an arq worker (needs REDIS_URL)")
    worker.set_defaults(handler=_worker)

    cleanup = commands.add_parser("cleanup", help="remove orphaned objects and expired uploads")
    cleanup.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    cleanup.add_argument(
        "--older-than",
        type=parse_duration,
        default=None,
        help="e.g. 90m, 24h, 7d (default: UPLOADSVC_CLEANUP_OLDER_THAN_SECONDS)",
    )
    cleanup.add_argument(
        "--all-incomplete",
        action="store_true",
        help="also list every incomplete multipart upload in the bucket, not only those "
        "the service recorded (once, after upgrading from a version that did not)",
    )
    cleanup.set_defaults(handler=_cleanup)

    archive_import = commands.add_parser(
        "import", help="import an Open Event archive (zip) for a user, with a progress bar"
    )
    archive_import.add_argument("archive", type=Path, help="the zip, e.g. event.zip")
    archive_import.add_argument("--owner", required=True, help="the user id the event belongs to")
    archive_import.set_defaults(handler=_import_archive)

    example = commands.add_parser(
        "example-archive", help="write a small Open Event archive to try the importer with"
    )
    example.add_argument("path", type=Path, help="where to write the zip, e.g. event.zip")
    example.set_defaults(handler=_example_archive)

    storage = commands.add_parser("storage", help="object storage commands")
    storage_commands = storage.add_subparsers(dest="storage_command", required=True)
    init = storage_commands.add_parser(
        "init",
        help="create the bucket; merge in CORS, lifecycle, Block Public Access, encryption",
    )
    init.add_argument(
        "--check",
        action="store_true",
        help=f"change nothing: report what differs, exit {DRIFT_EXIT_CODE} if anything does",
    )
    init.set_defaults(handler=_storage_init)
    return parser


def run_migrations(settings: Settings) -> None:
    """Bring the database schema to the newest revision (blocking; call from a thread)."""
    # Alembic logs one "setup plugin" line per autogenerate plugin as it is
    # imported: noise before every start of `uploadsvc dev`.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_alembic_dir()))
    config.attributes["settings"] = settings
    if settings.uses_sqlite:
        _sqlite_path(settings.database_url).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(config, "head")


def _alembic_dir() -> Path:
    # An installed wheel carries the migrations in the package (pyproject.toml,
    # force-include); a source checkout keeps them in alembic/ beside src/.
    package = Path(__file__).resolve().parent
    for candidate in (package / "migrations", package.parents[1] / "alembic"):
        if (candidate / "env.py").is_file():
            return candidate
    raise SystemExit("uploadsvc: cannot find the migrations (alembic/ or uploadsvc/migrations/)")


def _sqlite_path(database_url: str) -> Path:
    return Path(database_url.split(":///", 1)[1])


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> dt.timedelta:
    """``90m``, ``24h``, ``7d``, ``3600s`` or plain seconds."""
    text = text.strip().lower()
    unit = text[-1] if text and text[-1] in _DURATION_UNITS else "s"
    number = text[:-1] if text and text[-1] in _DURATION_UNITS else text
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 24h)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return dt.timedelta(seconds=value * _DURATION_UNITS[unit])


async def _run_cleanup(settings: Settings, args: argparse.Namespace) -> str:
    from uploadsvc.resources import open_resources
    from uploadsvc.services.cleanup import run_cleanup

    older_than = args.older_than
    if older_than is None:  # not `or`: 0s is a valid cutoff
        older_than = dt.timedelta(seconds=settings.cleanup_older_than_seconds)
    async with open_resources(settings) as resources:
        report = await run_cleanup(
            resources.session_factory,
            resources.storage,
            older_than=older_than,
            dry_run=args.dry_run,
            all_incomplete=args.all_incomplete,
            settings=settings,
            # Without Redis no worker takes the confirms' scans and webhooks
            # from here: their reconcilers enqueue them from the API process.
            jobs=resources.jobs if resources.redis is not None else None,
        )
    return report.summary()


def _cleanup(settings: Settings, args: argparse.Namespace) -> int:
    # The service logs each run's summary for the scheduled runs; here the
    # command prints it as its output, so the log line would say it twice.
    logging.getLogger("uploadsvc.services.cleanup").setLevel(logging.WARNING)
    print(asyncio.run(_run_cleanup(settings, args)))
    return 0


def _import_archive(settings: Settings, args: argparse.Namespace) -> int:
    """``uploadsvc import``: store the zip, run its job here, show its stages, print the result."""
    if not args.archive.is_file():
        raise FileNotFoundError(f"no such file: {args.archive}")
    task = asyncio.run(_run_archive_import(settings, args.archive, owner=args.owner))
    if task.state.value == "SUCCESS" and not isinstance(task.result, str | None):
        event = task.result
        counts = ", ".join(f"{count} {table}" for table, count in event.counts.items() if count)
        print(f"imported {event.event_name!r} as {event.url} (task {task.task_id}): {counts}")
        for warning in event.warnings:
            print(f"  warning: {warning}")
        return 0
    where = ""
    if task.error is not None and task.error.file:
        where = f" ({task.error.file}, record {task.error.record_id})"
    print(f"import failed (task {task.task_id}): {task.result}{where}", file=sys.stderr)
    return 1


# How often the progress bar reads the job's row.
_PROGRESS_POLL_SECONDS = 0.2


async def _run_archive_import(settings: Settings, archive: Path, *, owner: str) -> TaskRead:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    from uploadsvc.job_queue import InProcessQueue
    from uploadsvc.resources import open_resources
    from uploadsvc.security import Principal
    from uploadsvc.services import events, imports
    from uploadsvc.workers.jobs import bind_in_process_jobs

    principal = Principal(user_id=owner)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        console=Console(stderr=True),
    )
    async with open_resources(settings) as resources:
        # Without Redis, the jobs the import enqueues (its media's image
        # variants and scans, its webhook) run in this command, which waits
        # for them before it exits; with Redis a worker takes them.
        bind_in_process_jobs(resources)
        with bar:
            row = bar.add_task(f"Storing {archive.name}", total=None)
            async with resources.session_factory() as session:
                job = await imports.submit_archive_file(
                    session, resources, principal=principal, path=archive
                )
            # Every try of the job's in this one run: a transient failure is
            # recorded as FAILURE (with its reason) instead of being retried later.
            running = asyncio.create_task(
                imports.run_import(resources, job.id, job_try=settings.import_max_tries)
            )
            while True:
                finished, _ = await asyncio.wait({running}, timeout=_PROGRESS_POLL_SECONDS)
                async with resources.session_factory() as session:
                    task = await events.get_import_job(session, principal=principal, job_id=job.id)
                if task.progress is not None:
                    stage = task.progress
                    bar.update(
                        row,
                        description=stage.message,
                        completed=stage.done,
                        total=stage.total or None,
                    )
                if finished:
                    running.result()
                    if isinstance(resources.jobs, InProcessQueue):
                        await resources.jobs.wait_idle()
                    return task


def _example_archive(_: Settings, args: argparse.Namespace) -> int:
    from uploadsvc.example_archive import EVENT_NAME, build_example_archive

    data = build_example_archive()
    args.path.write_bytes(data)
    print(f"{args.path}: an Open Event archive of {EVENT_NAME!r} ({len(data)} bytes)")
    return 0


def _worker(settings: Settings, _: argparse.Namespace) -> int:
    from uploadsvc.workers.settings import run_worker

    if not settings.redis_url:
        print("uploadsvc: the worker needs UPLOADSVC_REDIS_URL", file=sys.stderr)
        return 2
    serve_metrics_port(settings)
    run_worker(settings)
    return 0


def _migrate(settings: Settings, _: argparse.Namespace) -> int:
    run_migrations(settings)
    print("database is up to date")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    from uploadsvc.security import mint_token

    if settings.effective_jwt_secret is None:
        print("uploadsvc: no JWT secret is configured (tokens come from your IdP)", file=sys.stderr)
        return 2
    print(mint_token(settings, sub=args.sub, admin=args.admin, ttl_seconds=args.ttl))
    return 0


async def _initialize_storage(settings: Settings, *, check: bool = False) -> StorageSetup:
    from uploadsvc.storage import open_storage

    async with open_storage(settings) as storage:
        return await storage.initialize(cors_origins=settings.cors_origins, check=check)


def _storage_init(settings: Settings, args: argparse.Namespace) -> int:
    setup = asyncio.run(_initialize_storage(settings, check=args.check))
    for line in setup.done:
        print(line)
    for warning in setup.warnings:
        print(f"uploadsvc storage init: warning: {warning}", file=sys.stderr)
    for drift in setup.drift:
        print(f"drift: {drift}")
    if setup.drift:
        return DRIFT_EXIT_CODE
    if args.check:
        print("no drift")
    return 0


def _dev(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from uploadsvc.app import create_app
    from uploadsvc.security import mint_token

    overrides = {
        key: value
        for key, value in {"host": args.host, "port": args.port}.items()
        if value is not None
    }
    if overrides:
        settings = settings.model_copy(update=overrides)
    if settings.public_base_url == Settings.model_fields["public_base_url"].default:
        # Local storage URLs point at this process, wherever it listens.
        settings = settings.model_copy(
            update={"public_base_url": f"http://{settings.host}:{settings.port}"}
        )
    run_migrations(settings)
    setup = asyncio.run(_initialize_storage(settings))
    for line in setup.done:
        logger.info("storage: %s", line)
    for warning in setup.warnings:
        logger.warning("storage: %s", warning)
    base = f"http://{settings.host}:{settings.port}"
    print(
        f"\n  uploadsvc (development) on {base}"
        f"\n  demo page: {base}/demo  (paste the token below, drop files)"
        f"\n  API docs:  {base}/docs"
    )
    if settings.effective_jwt_secret is not None:
        token = mint_token(settings, sub="dev-user")
        print(f"  dev token (user dev-user, 24 h):\n    {token}")
        print(
            "  more tokens: make token, or"
            " UPLOADSVC_ENV=development uv run uploadsvc token --sub USER\n"
        )
    serve_metrics_port(settings)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        timeout_keep_alive=settings.keep_alive_timeout_seconds,
        **uvicorn_logging(settings, "dev"),
    )
    return 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    host = args.host or settings.host
    port = args.port or settings.port
    uvicorn_options = {
        **uvicorn_logging(settings, "serve"),
        "timeout_keep_alive": settings.keep_alive_timeout_seconds,
        "timeout_graceful_shutdown": settings.shutdown_timeout_seconds,
    }
    if args.workers > 1:
        with metrics_shared_by_workers() as metrics_dir:
            logger.info("metrics of %d workers add up in %s", args.workers, metrics_dir)
            serve_metrics_port(settings, host=host)
            # Several workers need an import string; each builds its app from the environment.
            uvicorn.run(
                "uploadsvc.app:create_served_app",
                factory=True,
                host=host,
                port=port,
                workers=args.workers,
                # A worker answers the supervisor's first health ping only once
                # Python, the settings and logging are loaded: on a busy machine
                # that takes longer than uvicorn's 5 s, and uvicorn would kill
                # and respawn it again and again.
                timeout_worker_healthcheck=30,
                **uvicorn_options,
            )
    else:
        from uploadsvc.app import create_app, prepare_for_serving

        serve_metrics_port(settings, host=host)
        app = create_app(settings)
        prepare_for_serving()
        uvicorn.run(
            app,
            host=host,
            port=port,
            **uvicorn_options,
        )
    return 0
