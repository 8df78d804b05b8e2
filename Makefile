# Portico: `make run` starts everything, `make test` runs the test suite. See README.md.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench bench-tools bench-ingest lint format install chromium postgresql clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo
	@echo
	@echo "  portal   http://127.0.0.1:8000/        admin http://127.0.0.1:8000/admin/"
	@echo "  gateway  http://127.0.0.1:8080/        (Ctrl-C stops everything)"
	@echo
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# Playwright drives Debian's chromium: pip's Playwright cannot download browsers here.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium (browser tests will be skipped)"; fi; }

# The analytics tests also run on a throwaway PostgreSQL cluster (tests/plugins/postgres_server.py):
# only Debian's binaries are needed, no service is started.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "postgresql is missing: sudo apt-get install postgresql (the PostgreSQL test cases will be skipped)"; fi; }

test: install chromium postgresql
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The benchmark drives wrk against nginx (upstream and reference proxy) and the gateway.
bench-tools:
	@{ command -v wrk && { command -v nginx || test -x /usr/sbin/nginx; }; } >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null; \
	  else echo "the benchmark needs wrk and nginx: sudo apt-get install nginx-light wrk"; fi; }

bench: install bench-tools
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Call records/s from the gateway's stream into the database, on SQLite and PostgreSQL.
bench-ingest: install postgresql
	$(BIN)/python -m bench.ingest $(BENCH_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var staticfiles test-artifacts
