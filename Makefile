# crm-mcp developer commands. Everything installs into .venv from nothing (Python 3.11 + pip).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install test test-fast lint format demo bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# byte-code now, as a wheel install does: an editable install is otherwise compiled at every
	@# start where __pycache__ cannot be written (PYTHONDONTWRITEBYTECODE, a read-only checkout)
	$(PY) -m compileall -q crm_mcp
	touch $(STAMP)

install: $(STAMP)

## the whole suite, slow-marked soak/crash/rate-limit runs included (what CI runs)
test: $(STAMP)
	$(PY) -m pytest -q

## the quick loop: everything except @pytest.mark.slow
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo: $(STAMP)
	$(VENV)/bin/crm-mcp demo

## every benchmark (each prints its own figures), then bench/results.md + bench/results.png;
## `make bench BENCH_ARGS=--quick` for smaller runs on a loaded machine
bench: $(STAMP)
	$(PY) bench/report.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
