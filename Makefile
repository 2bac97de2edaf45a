SHELL := /bin/bash
export PATH := $(HOME)/.local/bin:$(PATH)

# `make dev HOST=0.0.0.0 PORT=9000`
ifdef HOST
export UPLOADSVC_HOST := $(HOST)
endif
ifdef PORT
export UPLOADSVC_PORT := $(PORT)
endif

.PHONY: install dev test lint format typecheck bench migrate clean

install:
	@scripts/bootstrap.sh

dev: install
	uv run uploadsvc dev

test:
	@scripts/bootstrap.sh --test
	uv run pytest $(PYTEST_ARGS)

lint: install
	uv run ruff check .
	uv run ruff format --check .

format: install
	uv run ruff format .
	uv run ruff check --fix .

typecheck: install
	uv run mypy

bench: install
	@if [ -f bench/run.py ]; then uv run python bench/run.py; else echo "no benchmarks yet"; fi

migrate: install
	uv run uploadsvc migrate

clean:
	rm -rf .venv .venv-localstack .localstack-state .pytest_cache .mypy_cache .ruff_cache data uploadsvc.db*
