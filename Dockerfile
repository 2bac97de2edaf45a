# syntax=docker/dockerfile:1
#
#   docker build -t uploadsvc .
#   docker run -p 8000:8000 --env-file .env uploadsvc                 # the API
#   docker run --env-file .env uploadsvc uploadsvc migrate            # once per release
#   docker run --env-file .env uploadsvc uploadsvc storage init       # bucket, CORS, lifecycle
#
# The image defaults to UPLOADSVC_ENV=production: it refuses to start until real
# secrets are configured (see .env.example).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- builder: the locked, non-editable virtual environment -------------------------
FROM ${PYTHON_IMAGE} AS builder

# uv.lock is written by a recent uv (lock revision 5): pin the same release.
ARG UV_VERSION=0.13.9
RUN pip install --no-cache-dir --root-user-action=ignore "uv==${UV_VERSION}"

ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src

# Dependencies first: code changes do not reinstall them.
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project --no-editable

# Then the project itself, installed into the venv as a regular (non-editable)
# package, so the runtime image needs no source tree. README.md: the package's readme;
# alembic/: the migrations, which the wheel carries as uploadsvc/migrations.
COPY README.md ./
COPY alembic ./alembic
COPY src ./src
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-editable

# --- runtime --------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

# libmagic: the magic-byte check of uploaded objects (python-magic).
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libmagic1 \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 uploadsvc \
    && useradd --system --uid 10001 --gid uploadsvc --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin uploadsvc

# The venv lives at the same path as in the builder (its scripts' shebangs point there)
# and stays owned by root: the service cannot modify its own code.
COPY --from=builder /app/.venv /app/.venv
# /app is group-writable with the sticky bit: the service may create its own files
# there (the zero-config SQLite database, ./data/storage of the local backend) but
# cannot replace the root-owned ones.
RUN chown root:uploadsvc /app && chmod 1775 /app

WORKDIR /app
ENV PATH="/app/.venv/bin:${PATH}" \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UPLOADSVC_ENV=production \
    UPLOADSVC_HOST=0.0.0.0 \
    UPLOADSVC_PORT=8000

# Numeric, so that runAsNonRoot-style checks can verify it.
USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('UPLOADSVC_PORT') or '8000'; urllib.request.urlopen('http://127.0.0.1:' + port + '/healthz', timeout=3)"]

# --host here, not only in ENV: an empty UPLOADSVC_HOST= in an env file would reset it.
CMD ["uploadsvc", "serve", "--host", "0.0.0.0"]
