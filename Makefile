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

.PHONY: run serve test test-fast lint bench bench-quick venv dev clean

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

test: dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The tests not marked slow (@pytest.mark.slow: real servers restarted, large loads, browsers).
test-fast: dev
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

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
