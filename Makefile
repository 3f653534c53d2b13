# Direct Uploads — everything a fresh machine needs, from Python alone.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
RUN_STAMP := $(VENV)/.installed-run
# Every install comes from uv.lock (exact versions and hashes), installed by uv, which pip
# puts in the virtualenv first.
UV_VERSION := 0.13.9
UV := $(VENV)/bin/uv
UV_SYNC := UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --locked --quiet --python $(PY)
HOST ?= 127.0.0.1
PORT ?= 8000
MOTO_PORT ?= 9000
BUCKET ?= direct-uploads
PYTEST_ARGS ?=
# Test processes of the parallel pass (pytest-xdist): one per core by default.
TEST_WORKERS ?= auto
# The verifying S3 store of the test tier (LocalStack's S3) lives in a virtualenv of its own:
# its pins clash with the project's.
S3_VENV ?= .venv-s3
S3_PY := $(S3_VENV)/bin/python
S3_STAMP := $(S3_VENV)/.installed
S3_REQUIREMENTS := tests/verifying_s3/requirements.txt
# Its exact versions and hashes, from S3_REQUIREMENTS (`make lock`).
S3_LOCK := tests/verifying_s3/requirements.lock
# The peer the `peer` bench compares with (django-s3-file-field) needs Django REST framework and
# its own Django, so it has a virtualenv of its own too, from its own lock.
PEER_VENV ?= .venv-peer
PEER_PY := $(PEER_VENV)/bin/python
PEER_STAMP := $(PEER_VENV)/.installed
PEER_REQUIREMENTS := bench/s3ff/requirements.txt
PEER_LOCK := bench/s3ff/requirements.lock
VERIFYING_S3_PORT ?= 4566
VERIFYING_S3_ENV := VERIFYING_S3_PYTHON=$(abspath $(S3_PY))

# Development defaults for `make run`; production reads the real environment instead.
DEV_ENV := DEBUG=1
PORT_OPEN = $(PY) -c "import socket, sys; sys.exit(socket.socket().connect_ex(('$(HOST)', $(PORT))))"

.PHONY: help install install-run lock run run-s3 test lint browser nginx migrate clean bench \
	bench-quick s3-install s3-verifying peer-install

help:
	@echo "make run      install, migrate, create demo users, serve on http://$(HOST):$(PORT) (SQLite + local disk)"
	@echo "make run-s3   the same against a local S3 endpoint (moto server on port $(MOTO_PORT))"
	@echo "make test     install and run every test, browser tests and the verifying S3 store included"
	@echo "make install  create $(VENV) and install the project with its test tools (from uv.lock)"
	@echo "make lock     update uv.lock after changing the dependencies in pyproject.toml"
	@echo "make s3-verifying  run the verifying S3 store of the tests on port $(VERIFYING_S3_PORT)"

# Shell code that sets $$py to a Python >= 3.12 on PATH, or stops with what to do.
FIND_PYTHON = py=""; for c in $(PYTHON) python3.14 python3.13 python3.12 python3 python; do \
	  if command -v $$c >/dev/null 2>&1 && \
	     $$c -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then \
	    py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "Direct Uploads needs Python 3.12 or newer, and none was found on PATH." >&2; \
	  echo "Install one (for example python3.13) or run: make PYTHON=/path/to/python3.12 ..." >&2; \
	  exit 1; fi

# The virtualenvs get no pip of their own (seeding one costs seconds): uv installs into them.
$(PY):
	@$(FIND_PYTHON); \
	echo "Creating $(VENV) with $$($$py --version)"; \
	$$py -m venv --without-pip $(VENV)

# uv itself comes from the Python's own pip, or from a pip seeded into the virtualenv when that
# Python has none.
$(UV): | $(PY)
	@$(FIND_PYTHON); \
	if $$py -m pip --version >/dev/null 2>&1; then \
	  $$py -m pip --python $(PY) install --quiet --quiet uv==$(UV_VERSION); \
	else \
	  $(PY) -m ensurepip --default-pip >/dev/null && \
	  $(PY) -m pip install --quiet --quiet uv==$(UV_VERSION); fi

# What running needs, and nothing else: the test tools stay out of `make run`'s way.
$(RUN_STAMP): pyproject.toml uv.lock | $(UV)
	$(UV_SYNC) --no-dev --inexact
	@touch $(RUN_STAMP)

install-run: $(RUN_STAMP)

# Everything: the project, its test and check tools.
$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV_SYNC)
	@touch $(STAMP) $(RUN_STAMP)

install: $(STAMP)

lock: | $(UV)
	$(UV) lock
	$(UV) pip compile --quiet --universal --generate-hashes --python-version 3.12 \
	  --custom-compile-command "make lock" $(S3_REQUIREMENTS) -o $(S3_LOCK)
	$(UV) pip compile --quiet --universal --generate-hashes --python-version 3.12 \
	  --custom-compile-command "make lock" $(PEER_REQUIREMENTS) -o $(PEER_LOCK)

$(S3_PY):
	@$(FIND_PYTHON); \
	echo "Creating $(S3_VENV) (the verifying S3 store of the tests) with $$($$py --version)"; \
	$$py -m venv --without-pip $(S3_VENV)

$(S3_STAMP): $(S3_LOCK) | $(S3_PY) $(UV)
	$(UV) pip sync --quiet --python $(S3_PY) $(S3_LOCK)
	@touch $(S3_STAMP)

s3-install: $(S3_STAMP)

$(PEER_PY):
	@$(FIND_PYTHON); \
	echo "Creating $(PEER_VENV) (the peer of the bench, django-s3-file-field) with $$($$py --version)"; \
	$$py -m venv --without-pip $(PEER_VENV)

$(PEER_STAMP): $(PEER_LOCK) | $(PEER_PY) $(UV)
	$(UV) pip sync --quiet --python $(PEER_PY) $(PEER_LOCK)
	@touch $(PEER_STAMP)

peer-install: $(PEER_STAMP)

# The store the tests check signatures, expiry and checksums against, in the foreground; its
# secret key is `test` (any access key id).
s3-verifying: install s3-install
	$(VERIFYING_S3_ENV) $(PY) -m tests.verifying_s3 $(VERIFYING_S3_PORT)

migrate: install-run
	$(DEV_ENV) $(PY) manage.py create_demo_users --migrate

# The django-q2 worker runs beside the web server, so scheduled cleanup and the staff
# dashboard's "run cleanup now" work on a laptop too.
# It starts once the portal answers, so the two do not compete for the CPU while starting.
run: migrate
	@echo "Portal: http://$(HOST):$(PORT)/  (demo/demo, staff admin/admin)  API docs: /v1/docs"
	@set -e; \
	(until $(PORT_OPEN); do sleep 0.5; done; \
	 exec env $(DEV_ENV) $(PY) manage.py qcluster) >/dev/null 2>&1 & worker=$$!; \
	trap 'kill $$worker 2>/dev/null' EXIT INT TERM; \
	$(DEV_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

# The true direct-to-S3 flow on a laptop: a moto S3 server on loopback, a bucket whose CORS
# exposes ETag to the portal's origin, and the app pointed at it. moto keeps its objects in
# memory only, so this mode has a database of its own, started empty with each run: records of
# `make run`'s local files, or of an earlier moto's, would point at objects that are not there.
S3_DB := $(abspath db-s3.sqlite3)
S3_ENV := $(DEV_ENV) DATABASE_URL=sqlite:///$(S3_DB) MEDIA_ROOT=$(abspath media-s3) \
	AWS_STORAGE_BUCKET_NAME=$(BUCKET) AWS_S3_ENDPOINT_URL=http://127.0.0.1:$(MOTO_PORT) \
	AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_S3_REGION_NAME=us-east-1 \
	UPLOADS_CORS_ORIGINS=http://$(HOST):$(PORT),http://localhost:$(PORT)

run-s3: install
	rm -f $(S3_DB) $(S3_DB)-journal
	$(S3_ENV) $(PY) manage.py create_demo_users --migrate
	@set -e; \
	MOTO_DISABLE_GLOBAL_CORS=1 $(VENV)/bin/moto_server -H 127.0.0.1 -p $(MOTO_PORT) >/dev/null 2>&1 & moto=$$!; \
	trap 'kill $$moto 2>/dev/null' EXIT INT TERM; \
	$(PY) -c "import socket, time; [time.sleep(0.1) for _ in range(100) if socket.socket().connect_ex(('127.0.0.1', $(MOTO_PORT)))]"; \
	$(S3_ENV) $(PY) manage.py setup_bucket --create --abort-incomplete-days 7; \
	$(S3_ENV) $(PY) manage.py qcluster >/dev/null 2>&1 & worker=$$!; \
	trap 'kill $$moto $$worker 2>/dev/null' EXIT INT TERM; \
	echo "Portal: http://$(HOST):$(PORT)/  S3 endpoint: http://127.0.0.1:$(MOTO_PORT) bucket $(BUCKET)"; \
	$(S3_ENV) $(PY) manage.py runserver $(HOST):$(PORT)

# Browser tests need Chromium: CHROMIUM_PATH, a system chromium, or Playwright's own download.
browser: install
	@if [ -n "$$CHROMIUM_PATH" ] && [ -x "$$CHROMIUM_PATH" ]; then exit 0; fi; \
	for c in /usr/bin/chromium /usr/bin/chromium-browser; do [ -x $$c ] && exit 0; done; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null && exit 0; fi; \
	$(VENV)/bin/playwright install chromium

# The production-shape test runs the shipped deploy/nginx/ config in front of gunicorn.
nginx:
	@if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx) >/dev/null \
	  && exit 0; fi; \
	echo "nginx not found: the production-shape test will be skipped (install your distribution's nginx)"

# Two passes: everything in parallel, then the tests marked `serial` (they bound response times)
# alone. A pass that selects no test (exit 5, e.g. with a narrowing -k) is not a failure.
test: install browser nginx s3-install peer-install
	@set -e; for pass in '-n $(TEST_WORKERS) -m "not serial"' '-m serial'; do \
	  rc=0; eval '$(VERIFYING_S3_ENV) $(PY) -m pytest -p no:cacheprovider' "$$pass" '$(PYTEST_ARGS)' || rc=$$?; \
	  if [ $$rc -ne 0 ] && [ $$rc -ne 5 ]; then exit $$rc; fi; \
	done

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check uploads project
	$(VENV)/bin/mypy

# Every benchmark side by side against its baseline; the table also goes to bench/results.md.
bench: install peer-install
	$(PY) -m bench.run

bench-quick: install peer-install
	$(PY) -m bench.run --quick

clean:
	rm -rf $(VENV) $(S3_VENV) $(PEER_VENV) .pytest_cache media media-s3 db-s3.sqlite3 staticfiles e2e-artifacts
