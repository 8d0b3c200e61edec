# Two commands: `make run` and `make test`. Both install into .venv when needed.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
RUNTIME_STAMP := $(VENV)/.runtime-stamp
STAMP := $(VENV)/.installed-stamp
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/prorata_test
PYTEST_ARGS ?= -n 2 --dist loadfile
# The browser tests drive the pages in Chromium once, on SQLite; the PostgreSQL run is the rest of the suite
# (the database's own behaviour: locks, SKIP LOCKED, constraints), which keeps `make test` under 6 minutes.
PYTEST_PG_ARGS ?= $(PYTEST_ARGS) -m "not browser"

.PHONY: install install-runtime run test test-sqlite test-postgres lint bench clean

# Runtime packages only (requirements.lock): what `make run` and a production install need.
$(RUNTIME_STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.lock -e .
	@touch $(RUNTIME_STAMP)

# The test and development tools on top (requirements-dev.lock: pytest, localstripe, playwright...).
$(STAMP): $(RUNTIME_STAMP) requirements-dev.lock
	$(VENV)/bin/pip install --quiet -r requirements-dev.lock -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

install-runtime: $(RUNTIME_STAMP)

run: install-runtime
	@mkdir -p var/mail
	@echo "Migrating the database (the first time takes about two minutes: dj-stripe has many migrations)..."
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo
	$(PY) manage.py setup_schedules
	@echo ""
	@echo "  Billing page:  http://127.0.0.1:8000/billing/"
	@echo "  Admin:         http://127.0.0.1:8000/admin/"
	@echo "  E-mails are written to var/mail/. Scheduler: django-q2 cluster (qcluster). Ctrl-C stops both."
	@echo ""
	@# OPS-3: only the cluster's parent is told to stop, once: it stops its sentinel, which lets the
	@# workers finish and stops them in order. `trap 'kill 0'` sent SIGTERM to the whole process
	@# group: the sentinel (SIGTERM = die) was killed holding the stop event's lock and the parent
	@# hung in "stopping". The cluster runs in its own process group so Ctrl-C reaches it only as
	@# this one TERM (a second signal inside its stop would deadlock it the same way).
	@trap 'trap - EXIT INT TERM; kill -TERM $$server $$cluster 2>/dev/null; wait $$cluster' EXIT INT TERM; \
	  $(PY) -c 'import os, sys; os.setpgrp(); os.execv(sys.executable, [sys.executable, "manage.py", "qcluster"])' & \
	  cluster=$$!; \
	  $(PY) manage.py runserver 127.0.0.1:8000 --noreload & server=$$!; \
	  wait $$server

lint: install
	$(VENV)/bin/ruff check .

test-sqlite: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-postgres: install
	@if $(PY) -c "import psycopg,sys; psycopg.connect('$(TEST_DATABASE_URL)'.rsplit('/',1)[0] + '/postgres', connect_timeout=3).close()" 2>/dev/null; then \
	  echo "== PostgreSQL: $(TEST_DATABASE_URL)"; \
	  TEST_DATABASE_URL=$(TEST_DATABASE_URL) $(PY) -m pytest $(PYTEST_PG_ARGS); \
	else echo "== PostgreSQL not reachable at $(TEST_DATABASE_URL): skipped the PostgreSQL run"; fi

test: lint
	@echo "== SQLite"
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

bench: install
	$(PY) bench/billing_run.py

clean:
	rm -rf $(VENV) db.sqlite3* var staticfiles
