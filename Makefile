# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-fast lint typecheck bench system-deps migrate run-worker makecert clean

$(VENV)/.runtime: requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput

## Serve the site with daphne on http://$(HOST):$(PORT) (SQLite, in-memory layer, in-process media).
run: migrate
	$(VENV)/bin/daphne -b $(HOST) -p $(PORT) conference.asgi:application

## A separate media worker (MEDIA_MODE=workers); run one per core.
run-worker: migrate
	$(PY) manage.py runmedia

## System packages the tests use: Chromium (browser tests) and FFmpeg (recording).
system-deps:
	@bash scripts/system-deps.sh

## The whole suite. CI sets DATABASE_URL and REDIS_URL to real PostgreSQL and Redis.
test: $(VENV)/.dev system-deps
	$(PY) -m pytest

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check rooms media_relay roomapi conference tests benchmarks
	$(VENV)/bin/mypy rooms media_relay roomapi

## Benchmarks (not part of `make test`); figures go to docs/performance.md.
bench: $(VENV)/.dev system-deps
	$(PY) -m benchmarks

makecert: $(VENV)/.runtime
	$(PY) manage.py makecert

clean:
	rm -rf $(VENV) db.sqlite3 test_db.sqlite3 .pytest_cache .mypy_cache .ruff_cache
