#!/usr/bin/env bash
# Installs what the project needs on a Debian/Ubuntu machine. Idempotent: when
# everything is present it prints nothing and takes well under two seconds.
#
#   scripts/bootstrap.sh          libmagic, uv, the locked Python environment (.venv)
#   scripts/bootstrap.sh --test   ... plus LocalStack in .venv-localstack, and checks that
#                                 the PostgreSQL and Redis of the tests answer (starting
#                                 the local ones from the installed packages if needed);
#                                 ClamAV's daemon (clamav-daemon) for the scanning tests;
#                                 for the browser tests: Debian's chromium, Node.js/npm,
#                                 and `npm ci` of the pinned Uppy packages (tests/browser/uppy)
#   scripts/bootstrap.sh --bench  ... plus wrk, the load generator of bench/request_path_bench.py
#
# Environment:
#   UPLOADSVC_TEST_DATABASE_URL  default postgresql+asyncpg://postgres@127.0.0.1:5432/test
#   UPLOADSVC_TEST_REDIS_URL     default redis://127.0.0.1:6379/0
#   LOCALSTACK_VENV              default .venv-localstack (tests/support/localstack.py expects that)
#   PYTHON                       interpreter for pip/venv, default python3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

WANT_TEST=0
WANT_BENCH=0
for arg in "$@"; do
    case "$arg" in
        --test) WANT_TEST=1 ;;
        --bench) WANT_BENCH=1 ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "bootstrap: unknown argument: $arg (try --help)" >&2; exit 2 ;;
    esac
done

PYTHON=${PYTHON:-python3}
LOCALSTACK_VERSION=4.13.1
LS_VENV=${LOCALSTACK_VENV:-.venv-localstack}
LS_CONSTRAINTS=scripts/localstack-constraints.txt
# ldconfig, pg_ctlcluster and friends live in sbin, which a non-login PATH may lack.
export PATH="$HOME/.local/bin:$PATH:/usr/local/sbin:/usr/sbin:/sbin"

log() { echo "bootstrap: $*" >&2; }
die() { echo "bootstrap: $*" >&2; exit 1; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 && SUDO=(sudo) || SUDO=(false)
fi

APT_UPDATED=0
# apt_install PKG...: install Debian packages, running `apt-get update` only when
# the package lists do not know one of them yet.
apt_install() {
    command -v apt-get >/dev/null 2>&1 \
        || die "apt-get is not available; install these packages by hand: $*"
    local pkg
    for pkg in "$@"; do
        if [ "$APT_UPDATED" = 0 ] && ! apt-cache show "$pkg" >/dev/null 2>&1; then
            log "apt-get update"
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
            APT_UPDATED=1
        fi
    done
    log "apt-get install $*"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# --- (a) libmagic, the C library behind python-magic ---------------------------
# (no `grep -q`: it exits early, ldconfig gets SIGPIPE and pipefail reports failure)
if ! ldconfig -p 2>/dev/null | grep 'libmagic\.so\.1' >/dev/null; then
    apt_install libmagic1
fi

# --- (b) uv ---------------------------------------------------------------------
if ! command -v uv >/dev/null 2>&1; then
    log "installing uv (pip)"
    # Debian's own python3 refuses system-wide pip installs (PEP 668): fall back to --user.
    PIP_INSTALL=("$PYTHON" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore)
    "${PIP_INSTALL[@]}" uv 2>/dev/null \
        || "${PIP_INSTALL[@]}" --user --break-system-packages uv \
        || die "could not install uv: $PYTHON -m pip install uv failed"
    if ! command -v uv >/dev/null 2>&1; then
        # The uv wheel knows where it put its binary (e.g. a scripts dir not on PATH):
        # link it into ~/.local/bin, which the Makefile puts on PATH too.
        UV_BIN=$("$PYTHON" -c 'import uv; print(uv.find_uv_bin())') \
            || die "uv was installed but its binary cannot be found"
        mkdir -p "$HOME/.local/bin" && ln -sf "$UV_BIN" "$HOME/.local/bin/uv" \
            || die "cannot link $UV_BIN into $HOME/.local/bin"
    fi
    command -v uv >/dev/null 2>&1 || die "uv was installed but is not on PATH"
fi

# --- (c) the locked project environment (.venv, with the dev group) -------------
uv sync --frozen --quiet

# The benchmarks' load generator (make bench).
if [ "$WANT_BENCH" = 1 ] && ! command -v wrk >/dev/null 2>&1; then
    apt_install wrk
fi

[ "$WANT_TEST" = 1 ] || exit 0

# --- (d) LocalStack 4.13.1 in its own venv ---------------------------------------
# Its pinned boto3/botocore must not meet the project's. The marker holds a hash of
# the constraints file and the version, so editing either reinstalls.
LS_MARKER="$LS_VENV/.bootstrap-constraints.sha256"
LS_HASH=$( { cat "$LS_CONSTRAINTS"; echo "localstack-core==$LOCALSTACK_VERSION"; } \
    | sha256sum | cut -d' ' -f1)
ls_importable() {
    "$LS_VENV/bin/python" -c 'import localstack.runtime.main, service_identity' >/dev/null 2>&1
}

ls_reinstall=0
if [ -f "$LS_MARKER" ]; then
    [ "$(cat "$LS_MARKER")" = "$LS_HASH" ] || ls_reinstall=1
fi
if [ "$ls_reinstall" = 0 ] && ! ls_importable; then
    ls_reinstall=1
fi
if [ "$ls_reinstall" = 1 ]; then
    log "installing LocalStack $LOCALSTACK_VERSION into $LS_VENV (30-60 s)"
    # Debian splits ensurepip (needed by `python3 -m venv`) into python3-venv.
    if ! "$PYTHON" -c 'import ensurepip' >/dev/null 2>&1; then
        apt_install "python3-venv"
    fi
    rm -rf "$LS_VENV"
    "$PYTHON" -m venv "$LS_VENV"
    "$LS_VENV/bin/pip" install -q --disable-pip-version-check -c "$LS_CONSTRAINTS" \
        "localstack-core[base-runtime]==$LOCALSTACK_VERSION" service_identity
    ls_importable || die "LocalStack was installed into $LS_VENV but does not import"
fi
# Written last: an interrupted install has no marker and is redone. An install
# that imports but has no marker yet (made by hand) is adopted as is.
if [ ! -f "$LS_MARKER" ] || [ "$(cat "$LS_MARKER")" != "$LS_HASH" ]; then
    echo "$LS_HASH" >"$LS_MARKER"
fi

# --- (e) PostgreSQL and Redis of the tests ---------------------------------------
DATABASE_URL=${UPLOADSVC_TEST_DATABASE_URL:-postgresql+asyncpg://postgres@127.0.0.1:5432/test}
REDIS_URL=${UPLOADSVC_TEST_REDIS_URL:-redis://127.0.0.1:6379/0}

# scheme://[user[:password]@]host[:port][/path]
URL_RE='^[a-z0-9+]+://(([^:@/]*)(:([^@/]*))?@)?(\[[^]]+\]|[^:/?]+)(:([0-9]+))?(/([^?]*))?'
[[ "$DATABASE_URL" =~ $URL_RE ]] || die "cannot parse UPLOADSVC_TEST_DATABASE_URL=$DATABASE_URL"
PG_USER=${BASH_REMATCH[2]:-postgres} PG_PASSWORD=${BASH_REMATCH[4]}
PG_HOST=${BASH_REMATCH[5]} PG_PORT=${BASH_REMATCH[7]:-5432} PG_DB=${BASH_REMATCH[9]:-postgres}
PG_HOST=${PG_HOST#[}; PG_HOST=${PG_HOST%]}
[[ "$REDIS_URL" =~ $URL_RE ]] || die "cannot parse UPLOADSVC_TEST_REDIS_URL=$REDIS_URL"
REDIS_PASSWORD=${BASH_REMATCH[4]} REDIS_HOST=${BASH_REMATCH[5]} REDIS_PORT=${BASH_REMATCH[7]:-6379}
REDIS_HOST=${REDIS_HOST#[}; REDIS_HOST=${REDIS_HOST%]}

is_local() { [[ "$1" =~ ^(127\.[0-9.]+|localhost|::1)$ ]]; }

# Readiness without the client tools falls back to a bare TCP connect.
tcp_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
pg_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT"
    else
        tcp_open "$PG_HOST" "$PG_PORT"
    fi
}
redis_ready() {
    if command -v redis-cli >/dev/null 2>&1; then
        [ "$(env ${REDIS_PASSWORD:+"REDISCLI_AUTH=$REDIS_PASSWORD"} \
            redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
    else
        tcp_open "$REDIS_HOST" "$REDIS_PORT"
    fi
}
wait_for() { # wait_for CHECK SECONDS
    local i
    for ((i = 0; i < $2 * 5; i++)); do "$1" && return 0; sleep 0.2; done
    return 1
}

if ! pg_ready; then
    is_local "$PG_HOST" || die "PostgreSQL at $PG_HOST:$PG_PORT does not answer (UPLOADSVC_TEST_DATABASE_URL)"
    command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ] \
        || die "PostgreSQL is not installed: apt-get install postgresql"
    PG_VERSION=$(ls /etc/postgresql | sort -V | tail -n 1)
    [ -n "$PG_VERSION" ] && [ -d "/etc/postgresql/$PG_VERSION/main" ] \
        || die "PostgreSQL has no 'main' cluster: pg_createcluster --start ${PG_VERSION:-15} main"
    log "starting PostgreSQL $PG_VERSION"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start \
        || log "pg_ctlcluster $PG_VERSION main start failed"
    wait_for pg_ready 20 || die "PostgreSQL $PG_VERSION did not come up on $PG_HOST:$PG_PORT" \
        "(see /var/log/postgresql/postgresql-$PG_VERSION-main.log)"
fi

# The tests connect to this database to create (and drop) their own one.
if command -v psql >/dev/null 2>&1; then
    psql_admin() {
        PGPASSWORD="$PG_PASSWORD" PGCONNECT_TIMEOUT=5 psql -X -q -At -h "$PG_HOST" \
            -p "$PG_PORT" -U "$PG_USER" -d postgres "$@"
    }
    if exists=$(psql_admin -v db="$PG_DB" <<<"SELECT 1 FROM pg_database WHERE datname = :'db'" \
        2>&1); then
        if [ "$exists" != 1 ]; then
            log "creating database $PG_DB"
            psql_admin -v db="$PG_DB" <<<'CREATE DATABASE :"db"' >/dev/null
        fi
    else
        die "cannot connect to PostgreSQL as $PG_USER at $PG_HOST:$PG_PORT: $exists"
    fi
fi

if ! redis_ready; then
    is_local "$REDIS_HOST" || die "Redis at $REDIS_HOST:$REDIS_PORT does not answer (UPLOADSVC_TEST_REDIS_URL)"
    command -v redis-server >/dev/null 2>&1 || die "Redis is not installed: apt-get install redis-server"
    log "starting Redis on port $REDIS_PORT"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
        --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for redis_ready 10 || die "Redis did not come up on port $REDIS_PORT (see /var/log/redis/ci.log)"
fi

# --- (e2) ClamAV's daemon for the malware-scanning tests (tests/test_scanning.py) -----
# Only the binaries: the tests start their own clamd with their own config and
# an EICAR-only signature database, so no freshclam download is ever needed.
if ! command -v clamd >/dev/null 2>&1; then
    apt_install clamav-daemon
fi

# --- (f) the browser tests (tests/test_browser.py) ---------------------------------
# Debian's Chromium, driven by Playwright (a dev dependency) at /usr/bin/chromium:
# Playwright never downloads a browser of its own here.
if [ ! -x /usr/bin/chromium ]; then
    apt_install chromium
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
fi
# The published Uppy packages, exactly as package-lock.json pins them. The marker
# holds the lock's hash: a changed lock (or a removed node_modules) reinstalls.
UPPY_DIR=tests/browser/uppy
UPPY_MARKER="$UPPY_DIR/node_modules/.bootstrap-lock.sha256"
UPPY_HASH=$(sha256sum "$UPPY_DIR/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$UPPY_MARKER" ] || [ "$(cat "$UPPY_MARKER")" != "$UPPY_HASH" ]; then
    log "npm ci in $UPPY_DIR (Uppy and esbuild for the browser tests)"
    (cd "$UPPY_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) \
        || die "npm ci failed in $UPPY_DIR"
    # Written last: an interrupted install has no marker and is redone.
    echo "$UPPY_HASH" >"$UPPY_MARKER"
fi
