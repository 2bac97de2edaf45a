"""Settings, read from the environment (prefix ``UPLOADSVC_``) or ``.env``.

Every setting is listed, with a comment, in ``.env.example``.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Annotated, Literal

from limits import parse_many
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

VariantName = Literal["large", "thumbnail", "small", "icon"]


def _avatar_variant_px() -> dict[VariantName, int]:
    return {"large": 512}


MiB = 1024 * 1024

# Used by `uploadsvc dev`, so that `make dev` works with zero setup.
# Production refuses to start with either of them (see `_refuse_placeholders`).
DEV_JWT_SECRET = "dev-only-jwt-secret-change-me"  # noqa: S105 - a known placeholder on purpose
DEV_SIGNING_SECRET = "dev-only-signing-secret-change-me"  # noqa: S105
PLACEHOLDER_SECRETS = frozenset({DEV_JWT_SECRET, DEV_SIGNING_SECRET, "changeme", "secret", ""})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="UPLOADSVC_",
        env_file=".env",
        extra="ignore",
        frozen=True,
        # `UPLOADSVC_JWT_SECRET=` (as copied from .env.example) means "not set".
        env_ignore_empty=True,
        # A refused setting is often a secret: its value must not reach the logs.
        hide_input_in_errors=True,
    )

    # Production unless said otherwise: only `uploadsvc dev` runs in development,
    # where the public placeholder secrets are accepted (anyone could mint a token).
    env: Literal["development", "production"] = "production"

    # --- database -------------------------------------------------------
    database_url: str = "sqlite+aiosqlite:///./uploadsvc.db"
    # Connections kept, and the most open at once (no overflow): connections
    # opened past the pool and closed again on return cost a connect (TLS
    # attempt, authentication, statement preparation) per burst request.
    database_pool_size: int = 20

    # --- deadlines (docs/api.md, "Outages") --------------------------------
    # Every call to a dependency ends by these; one that runs out is a 503
    # with Retry-After. Opening a database connection (SQLite: the lock wait).
    database_connect_timeout_seconds: float = Field(default=2, gt=0)
    # Waiting for a free connection of the pool (PostgreSQL).
    database_pool_timeout_seconds: float = Field(default=2, gt=0)
    # One statement, on the client and as PostgreSQL's statement_timeout.
    database_statement_timeout_seconds: float = Field(default=2, gt=0)
    # Opening a connection to S3; waiting for each read of its answer.
    s3_connect_timeout_seconds: float = Field(default=2, gt=0)
    s3_read_timeout_seconds: float = Field(default=10, gt=0)
    # Tries of one S3 call (the first included) on a timeout or a 5xx.
    s3_max_attempts: int = Field(default=3, ge=1, le=10)

    # --- object storage -------------------------------------------------
    storage_backend: Literal["local", "s3"] = "local"
    local_storage_dir: Path = Path("./data/storage")
    # Signs the URLs of the local backend (HMAC-SHA256).
    signing_secret: SecretStr = SecretStr(DEV_SIGNING_SECRET)
    s3_endpoint_url: str | None = None
    # The host browsers and apps reach; presigned URLs are signed for it.
    s3_public_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_bucket: str = "uploads"
    s3_access_key_id: str | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_addressing_style: Literal["auto", "path", "virtual"] = "auto"

    # --- jobs -----------------------------------------------------------
    redis_url: str | None = None

    # --- cleanup (docs/api.md, "Cleanup") ---------------------------------
    # How old an unconfirmed object must be before cleanup removes it.
    cleanup_older_than_seconds: int = Field(default=86400, ge=0)
    # How often the cleanup job runs: a divisor of 60, or a multiple of 60 dividing 1440.
    cleanup_every_minutes: int = Field(default=60, ge=1, le=1440)

    # --- event imports (docs/api.md, "Event import") -----------------------
    # An import running longer than this stops and is retried (up to
    # import_max_tries); a cleanup is stopped by arq and runs at its next time.
    # A job whose worker died is picked up again this long + 15 s after it
    # started (arq's in-progress lease).
    job_timeout_seconds: int = Field(default=600, ge=1)
    # PENDING/STARTED imports untouched for this long are re-enqueued (Redis lost them).
    import_stale_after_seconds: int = Field(default=900, ge=1)
    # Runs of one import job, at most: a transient failure (database or storage
    # unreachable) is tried again after 2 s, 4 s, ...; the last run records FAILURE.
    import_max_tries: int = Field(default=5, ge=1, le=20)

    # --- malware scanning (docs/api.md, "Malware scanning") ----------------
    # "clamd": every new file is held back ("scan": "pending") until ClamAV's
    # daemon has scanned it; "off" keeps files servable once confirmed.
    scan_backend: Literal["off", "clamd"] = "off"
    # unix:///run/clamav/clamd.ctl or tcp://127.0.0.1:3310
    clamd_url: str = "unix:///run/clamav/clamd.ctl"
    # clamd's StreamMaxLength: larger files are not sent but marked unscanned_too_large.
    clamd_stream_max_bytes: int = Field(default=100 * MiB, gt=0)
    # Deadline of one scan (connect, stream and verdict).
    clamd_timeout_seconds: float = Field(default=120, gt=0)
    # Whether unscanned_too_large files may be downloaded (they are not known to be clean).
    scan_serve_too_large: bool = False
    # An infected object is moved under quarantine/ ("quarantine") or deleted ("delete").
    scan_infected_action: Literal["quarantine", "delete"] = "quarantine"
    # Tries of one scan job while clamd is down (2 s, 4 s, ... apart); a file
    # still pending after them is enqueued again by the reconciler (every minute).
    scan_max_tries: int = Field(default=8, ge=1, le=50)
    # --- image variants (docs/api.md, "Image variants") --------------------
    # Confirmed JPEG/PNG/GIF/WebP files get these copies, each at most this many
    # px on its long side (never upscaled); 0 turns a variant off.
    image_large_px: int = Field(default=1280, ge=0, le=8192)
    image_thumbnail_px: int = Field(default=512, ge=0, le=8192)
    image_small_px: int = Field(default=256, ge=0, le=8192)
    image_icon_px: int = Field(default=64, ge=0, le=8192)
    # Per profile: an avatar's sizes, over the ones above (JSON in the environment,
    # e.g. {"large": 512, "icon": 0}); an avatar is never shown larger than 512 px.
    image_avatar_px: dict[VariantName, int] = Field(default_factory=_avatar_variant_px)
    # webp keeps transparency; jpeg for clients without WebP (alpha on white).
    image_variant_format: Literal["webp", "jpeg"] = "webp"
    # An image declaring more pixels is refused from its header, undecoded.
    image_max_pixels: int = Field(default=50_000_000, ge=1)
    # The child process that makes one file's variants is killed past this.
    image_job_timeout_seconds: int = Field(default=60, ge=1)
    # ... and may map at most this much memory (its address space; 0: no cap).
    # 50 MP of RGBA decoded is 200 MiB, plus the interpreter and a copy.
    image_max_memory_mib: int = Field(default=1024, ge=0)
    # Rewrite a confirmed JPEG/PNG/WebP original without its metadata (EXIF,
    # XMP, comments; a JPEG keeps its orientation), losslessly, in the variants job.
    strip_image_metadata: bool = False

    # --- auth -----------------------------------------------------------
    jwt_secret: SecretStr | None = None
    jwt_jwks_url: str | None = None
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway_seconds: int = 30

    # --- HTTP -----------------------------------------------------------
    # Base of the URLs the service hands out for itself (local storage URLs).
    public_base_url: str = "http://127.0.0.1:8000"
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    host: str = "127.0.0.1"
    port: int = 8000
    # `serve` (docs/api.md, "Processes"): after SIGTERM, /readyz answers 503 for
    # this long while requests are still served, so the load balancer stops
    # sending new ones before the listener closes.
    shutdown_drain_seconds: float = Field(default=0, ge=0, le=300)
    # Then requests in flight get this long to finish before they are cut.
    shutdown_timeout_seconds: int = Field(default=30, ge=1, le=3600)
    # How long an idle keep-alive connection stays open. Longer than the
    # client pools and proxies in front (httpx 5 s, nginx 60-75 s, AWS ALB
    # 60 s): a server that closes first races the client's next request,
    # which then meets a reset (docs/api.md, "Outages").
    keep_alive_timeout_seconds: int = Field(default=90, ge=1, le=3600)

    # --- logs and metrics (README.md, "Logs and metrics") -----
    # json | console. Unset: console for `uploadsvc dev`, JSON lines everywhere else.
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # Serve /metrics on the API's own port.
    metrics_public: bool = True
    # Also serve the metrics on this port (of `host`), e.g. for a scraper the
    # public port does not reach; `uploadsvc worker` serves its own there.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)

    # --- quotas and rate limits (docs/api.md, "Quotas", "Rate limits") -----
    # Bytes one user may hold: confirmed files plus pending uploads' declared
    # sizes. Unset: no quota.
    user_quota_bytes: int | None = Field(default=None, ge=0)
    # Requests one user may make per route class, as `limits` strings
    # ("60/minute", "10/second;500/hour"); empty turns a class's limit off.
    # Shared through Redis across replicas when UPLOADSVC_REDIS_URL is set.
    # The defaults stop a runaway client, not a busy one.
    rate_limit_upload_urls: str = "600/minute"
    rate_limit_direct_uploads: str = "120/minute"
    rate_limit_imports: str = "30/minute"

    # --- webhooks (docs/api.md, "Webhooks") ---------------------------------
    # Where events are POSTed; unset: no webhooks.
    webhook_url: str | None = None
    # The Standard Webhooks signing secret ("whsec_" + base64 of 24-64 random bytes).
    webhook_secret: SecretStr | None = None
    # Attempts of one delivery, the first included, before it is marked failed.
    webhook_max_attempts: int = Field(default=10, ge=1, le=50)
    # Wait before the second attempt; doubled before each one after (at most an hour).
    webhook_retry_backoff_seconds: float = Field(default=5, gt=0)
    # Deadline of one attempt (connect, send, answer).
    webhook_timeout_seconds: float = Field(default=10, gt=0)

    # --- uploads --------------------------------------------------------
    upload_url_expires_seconds: int = Field(default=900, ge=1, le=604800)
    download_url_expires_seconds: int = Field(default=3600, ge=1, le=604800)
    max_attachment_bytes: int = Field(default=100 * MiB, gt=0)
    max_avatar_bytes: int = Field(default=5 * MiB, gt=0)
    max_event_import_bytes: int = Field(default=200 * MiB, gt=0)
    # The decoded image of `POST /v1/upload/image` (its body is base64, 4/3 of this).
    max_image_bytes: int = Field(default=10 * MiB, gt=0)
    # Every body the framework reads whole (the JSON bodies); refused with 413 past it.
    max_json_body_bytes: int = Field(default=64 * 1024, gt=0)

    @field_validator("image_avatar_px")
    @classmethod
    def _variant_px_in_range(cls, value: dict[VariantName, int]) -> dict[VariantName, int]:
        if any(not 0 <= px <= 8192 for px in value.values()):
            raise ValueError("each size is 0 (off) to 8192 px")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # A comma-separated list reads better in an env file than JSON.
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("public_base_url", "s3_endpoint_url", "s3_public_endpoint_url")
    @classmethod
    def _strip_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("rate_limit_upload_urls", "rate_limit_direct_uploads", "rate_limit_imports")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        if value.strip():
            parse_many(value)  # ValueError on a malformed limit
        return value

    @field_validator("clamd_url")
    @classmethod
    def _clamd_address(cls, value: str) -> str:
        if value.startswith("unix:///") or value.startswith("tcp://"):
            return value
        raise ValueError("must be unix:///path/to/clamd.sock or tcp://host:port")

    @field_validator("cleanup_every_minutes")
    @classmethod
    def _fits_a_cron_schedule(cls, value: int) -> int:
        if (value < 60 and 60 % value == 0) or (value % 60 == 0 and 1440 % value == 0):
            return value
        raise ValueError("must divide 60, or be a multiple of 60 that divides 1440")

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            raw = value.get_secret_value().removeprefix("whsec_")
            try:
                decoded = base64.b64decode(raw, validate=True)
            except binascii.Error:
                raise ValueError("must be whsec_ followed by base64") from None
            if len(decoded) < 24:
                raise ValueError("must hold at least 24 bytes (openssl rand -base64 32)")
        return value

    @model_validator(mode="after")
    def _webhook_needs_secret(self) -> Settings:
        if self.webhook_url is not None and self.webhook_secret is None:
            raise ValueError("UPLOADSVC_WEBHOOK_SECRET must be set with UPLOADSVC_WEBHOOK_URL")
        return self

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.env == "development":
            return self
        if self.jwt_jwks_url is None and _is_placeholder(self.jwt_secret):
            raise ValueError(
                "UPLOADSVC_JWT_SECRET (or UPLOADSVC_JWT_JWKS_URL) must be set to a real "
                "secret outside development"
            )
        if self.jwt_secret is not None:
            _require_real_secret("UPLOADSVC_JWT_SECRET", self.jwt_secret)
        if self.storage_backend == "local":
            _require_real_secret("UPLOADSVC_SIGNING_SECRET", self.signing_secret)
        if self.jwt_jwks_url is not None and (self.jwt_audience is None or self.jwt_issuer is None):
            # An identity provider signs tokens for many services: without both
            # checks, a token it issued for any of them would be accepted here.
            raise ValueError(
                "UPLOADSVC_JWT_AUDIENCE and UPLOADSVC_JWT_ISSUER must be set with "
                "UPLOADSVC_JWT_JWKS_URL outside development"
            )
        return self

    @property
    def is_development(self) -> bool:
        return self.env == "development"

    @property
    def effective_jwt_secret(self) -> str | None:
        """The HS256 secret: the configured one, or the development default."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.is_development and self.jwt_jwks_url is None:
            return DEV_JWT_SECRET
        return None

    @property
    def uses_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


# HS256 keys and URL signatures are only as strong as their secret; 32 bytes is
# SHA-256's own size (RFC 7518 §3.2 asks at least that much for HS256).
MIN_SECRET_BYTES = 32


def _is_placeholder(secret: SecretStr | None) -> bool:
    return secret is None or secret.get_secret_value() in PLACEHOLDER_SECRETS


def _require_real_secret(name: str, secret: SecretStr) -> None:
    # The messages name the setting, never its value.
    if _is_placeholder(secret):
        raise ValueError(f"{name} is a placeholder; set a real secret outside development")
    if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"{name} must be at least {MIN_SECRET_BYTES} bytes outside development "
            "(openssl rand -base64 32)"
        )
