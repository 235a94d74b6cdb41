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

bench: $(STAMP)
	$(PY) bench/startup.py
	$(PY) bench/latency.py
	$(PY) bench/quota.py
	$(PY) bench/faults.py
	$(PY) bench/outbox.py
	$(PY) bench/requests_per_booking.py
	$(PY) bench/sync_records.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
