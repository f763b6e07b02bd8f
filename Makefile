# The two commands: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
# daphne drops WebSocket messages over 1 MiB by default: allow WS_MAX_FRAME_BYTES (1 MiB + 64 KiB) with room to
# spare, so the server answers frame_too_large up to 2 MiB and daphne closes (1009) above (docs/operations.md).
DAPHNE_WS_LIMITS ?= --websocket-max-message-size 2097152 --websocket-max-frame-size 2097152

.PHONY: run run-cluster test lint bench bench-load system-deps migrate run-worker run-tasks makecert clean
.PHONY: static sdk image image-test

$(VENV)/.runtime: requirements.txt scripts/build_fastpath.py media_relay/_native/fastpath.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	$(PY) scripts/build_fastpath.py
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

migrate: $(VENV)/.runtime
	$(PY) manage.py migrate --noinput

## Static files as production serves them: hashed, gzip-compressed names in STATIC_ROOT (servestatic or nginx).
static: $(VENV)/.runtime
	STATIC_MANIFEST=true $(PY) manage.py collectstatic --noinput -v0

## Serve the site with daphne on http://$(HOST):$(PORT) (SQLite, in-memory layer, in-process media), and the task
## worker beside it (manage.py runtasks: webhook deliveries, room mixes; stopped with daphne; docs/operations.md).
run: migrate static
	$(PY) manage.py runtasks --worker-id make-run & worker=$$!; \
	trap 'kill $$worker 2>/dev/null; wait $$worker 2>/dev/null' EXIT INT TERM; \
	STATIC_MANIFEST=true $(VENV)/bin/daphne -b $(HOST) -p $(PORT) $(DAPHNE_WS_LIMITS) conference.asgi:application

## The production stack here: Debian's nginx on $(PORT) (HTTP) and $(TLS_PORT) (HTTPS, self-signed) in front of
## supervisord's daphne x $(DAPHNES) and runmedia x $(WORKERS) (deploy/; needs REDIS_URL, DATABASE_URL advised).
DAPHNES ?= 2
WORKERS ?= $(shell nproc)
TLS_PORT ?= 8443
run-cluster: $(VENV)/.runtime
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || bash scripts/system-deps.sh
	$(PY) scripts/deploy.py run --daphnes $(DAPHNES) --workers $(WORKERS) --host $(HOST) --port $(PORT) --tls-port $(TLS_PORT)

## A separate media worker (MEDIA_MODE=workers); run one per core.
run-worker: migrate
	$(PY) manage.py runmedia

## The task worker alone (webhook deliveries, room mixes), e.g. beside `daphne` started by hand.
run-tasks: migrate
	$(PY) manage.py runtasks --worker-id tasks-1

## System packages the tests use: Chromium (browser tests) and FFmpeg (recording).
system-deps:
	@bash scripts/system-deps.sh

## The whole suite. CI sets DATABASE_URL and REDIS_URL to real PostgreSQL and Redis.
test: $(VENV)/.dev system-deps
	$(PY) -m pytest

## ruff, mypy, and the import contracts of .importlinter (layers, SDK independence, no cycles).
lint: $(VENV)/.dev
	$(VENV)/bin/ruff check rooms media_relay roomapi conference tests benchmarks
	$(VENV)/bin/mypy conference rooms media_relay roomapi
	$(VENV)/bin/lint-imports

## Benchmarks (not part of `make test`); figures go to docs/performance.md, charts to docs/img/ (benchmarks/charts.py).
## benchmarks.loss (the chat under UDP loss, ours and Janus) needs root for its network namespace; skipped elsewhere.
bench: $(VENV)/.dev system-deps
	$(PY) -m benchmarks && $(PY) -m benchmarks.cascade && $(PY) -m benchmarks.load && $(PY) -m benchmarks.large_room && $(PY) -m benchmarks.loss && $(PY) -m benchmarks.charts

## Load and soak alone (issue 7): 1,000 signalling clients, a 10-minute soak, 3-person media rooms (~16 min);
## then one large room (issue 13): 300 clients, then 1,000 (990 viewers) joining one room at 20/s (~3 min).
bench-load: $(VENV)/.dev system-deps
	$(PY) -m benchmarks.load && $(PY) -m benchmarks.large_room && $(PY) -m benchmarks.charts

## The SDKs as packages in dist/: the roomapi wheel and sdist (pyproject.toml), the npm tarball (package.json).
sdk: $(VENV)/.dev
	rm -rf dist && $(PY) -m build --outdir dist .
	npm install --no-audit --no-fund && npm pack --pack-destination dist

## The container image (deploy/Dockerfile) on a debootstrap base, no registry; not part of `make test` (minutes).
image: $(VENV)/.runtime
	bash scripts/image.sh build

## Run the image against this machine's PostgreSQL and Redis (DATABASE_URL, REDIS_URL): /healthz, a join.
image-test: image
	bash scripts/image.sh test

makecert: $(VENV)/.runtime
	$(PY) manage.py makecert

clean:
	rm -rf $(VENV) db.sqlite3 test_db.sqlite3 .pytest_cache .mypy_cache .ruff_cache
