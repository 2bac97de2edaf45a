SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv installed with `pip install --user` lands in ~/.local/bin.
export PATH := $(HOME)/.local/bin:$(PATH)
# `uv run` must never rewrite the committed uv.lock; scripts/bootstrap.sh syncs
# the environment from it (`uv sync --frozen`).
export UV_FROZEN := 1

BOOTSTRAP := bash scripts/bootstrap.sh

# `make dev HOST=0.0.0.0 PORT=9000` (or `HOST=0.0.0.0 PORT=9000 make dev`).
HOST ?=
PORT ?=
ifneq ($(strip $(HOST)),)
dev: export UPLOADSVC_HOST := $(HOST)
endif
ifneq ($(strip $(PORT)),)
dev: export UPLOADSVC_PORT := $(PORT)
endif

# `make test PYTEST_ARGS="-x -k confirm"`
PYTEST_ARGS ?=
# The suite mostly waits on servers it starts, so two pytest-xdist workers
# halve its wall time even on two cores; a file's tests stay in one worker.
# `make test PYTEST_WORKERS=0` runs everything in one process.
PYTEST_WORKERS ?= 2

# `make token SUB=alice` mints a token for another user.
SUB ?= dev-user

.PHONY: help install dev token test lint format typecheck bench migrate clean distclean

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  make %-10s %s\n", $$1, $$2}'

install: ## libmagic, uv and the locked Python environment (.venv)
	@$(BOOTSTRAP)

dev: install ## run the service with zero configuration (SQLite, local storage)
	uv run uploadsvc dev

token: ## print a development token (for SUB=dev-user unless given)
	@command -v uv >/dev/null || { echo "uv is missing: run make dev (or make install) first" >&2; exit 1; }
	@UPLOADSVC_ENV=development uv run uploadsvc token --sub '$(SUB)'

test: ## the whole suite: installs LocalStack, checks PostgreSQL and Redis, runs pytest
	@$(BOOTSTRAP) --test
	uv run pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

lint: install ## ruff check + ruff format --check
	@status=0; \
	uv run ruff check . || status=1; \
	uv run ruff format --check . || status=1; \
	exit $$status

format: install ## sort imports and format the code
	uv run ruff check --select I --fix .
	uv run ruff format .

typecheck: install ## mypy --strict (files and options in pyproject.toml)
	uv run mypy

bench: ## benchmarks (bench/run.py; needs what the tests need, and wrk)
	@$(BOOTSTRAP) --test --bench
	@if [ -f bench/run.py ]; then \
		uv run python bench/run.py; \
	else \
		echo "no benchmarks exist yet (bench/run.py is missing)"; \
	fi

migrate: install ## apply the database migrations (UPLOADSVC_DATABASE_URL)
	uv run uploadsvc migrate

clean: ## remove caches and build output (keeps environments and dev data)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist
	find . -path ./.venv -prune -o -path ./.venv-localstack -prune -o \
		-type d -name __pycache__ -exec rm -rf {} +

distclean: clean ## also remove .venv, .venv-localstack and LocalStack's state
	rm -rf .venv .venv-localstack .localstack-state tests/browser/uppy/node_modules tests/browser/uppy/dist
