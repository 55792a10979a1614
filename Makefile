# Two commands on a fresh machine with Python 3.11:
#   make run    create .venv, install cvmon[server], migrate the embedded SQLite database, print an
#               API key and serve on http://127.0.0.1:8000 with the realistic demo traffic
#   make test   install the dev dependencies and run the whole test suite
# Day to day: `make test-fast` (the tests not marked slow, under two minutes) and `make lint`.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run serve test test-fast test-label-studio lint bench bench-quick venv dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# The stamp files re-run the install when pyproject.toml changes.
$(VENV)/.server-installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[server,demo]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.server-installed
	$(BIN)/python -m pip install --quiet --group dev -e '.[server,demo,onnx,torch,triton]'
	touch $@

venv: $(VENV)/.server-installed
dev: $(VENV)/.dev-installed

run: venv
	$(BIN)/cvmon demo --host $(HOST) --port $(PORT)

serve: venv
	$(BIN)/cvmon db upgrade
	$(BIN)/cvmon serve --host $(HOST) --port $(PORT)

# The suite runs in one pytest process per core, at most 4 (each holds its own PostgreSQL
# database and servers; a module's tests stay in one process). TEST_WORKERS=0 runs it in one.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); [ $$n -gt 4 ] && n=4; echo $$n)
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
# Bytecode caching on for the tests even where the environment turns it off: without it every
# pytest process rewrites the asserts of every test module again, and every cvmon subprocess a
# test starts compiles the package again (collection alone 21 s instead of 11).
PYTEST = PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

test: dev
	$(PYTEST) $(XDIST) $(PYTEST_ARGS)

# The tests not marked slow (@pytest.mark.slow: real servers restarted, large loads, browsers,
# the hostile suite, end-to-end pipelines).
test-fast: dev
	$(PYTEST) -m "not slow" $(XDIST) $(PYTEST_ARGS)

# The round trip through a real Label Studio (installed into ~/.cache/cvmon-tests on first use:
# minutes), left out of `make test` for the suite's time; the recorded payloads run there.
test-label-studio: dev
	CVMON_TEST_LABEL_STUDIO=1 $(PYTEST) tests/samples/test_label_studio.py $(PYTEST_ARGS)

# Static checks: ruff's lint rules, mypy on the packages, and the layering contracts
# (import-linter, [tool.importlinter] in pyproject.toml; docs/architecture.md draws them).
lint: dev
	$(BIN)/ruff check .
	$(BIN)/mypy monitor detectors
	$(BIN)/lint-imports

# The benchmarks of the notes (bench/*.py; each prints cvmon beside its reference tool and the
# ratio). They need the PostgreSQL of CVMON_TEST_DATABASE_URL and a quiet machine; see bench/.
bench-quick: dev
	$(BIN)/python bench/metrics.py --quick
	$(BIN)/python bench/pipeline.py --quick

bench: dev
	for b in ingest metrics pipeline sdk drift report size canary active; do $(BIN)/python bench/$$b.py || exit 1; done

clean:
	rm -rf $(VENV) cvmon.db cvmon.db-wal cvmon.db-shm .pytest_cache
