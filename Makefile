# The README's two commands: `make demo` and `make test`. Both set up .venv on their own.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
export PIP_CONSTRAINT := $(CURDIR)/constraints.txt

.PHONY: demo test lint format chaos bench clean setup setup-dev

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	touch $@

$(VENV)/.installed: $(VENV)/.base pyproject.toml constraints.txt
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.base pyproject.toml constraints.txt
	$(PIP) install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/lmforge demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests scripts benchmarks
	$(VENV)/bin/ruff format --check src tests scripts benchmarks

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix src tests scripts benchmarks
	$(VENV)/bin/ruff format src tests scripts benchmarks

chaos: $(VENV)/.installed-dev
	$(PY) -m pytest -q -m slow
	$(PY) scripts/chaos.py --kills 10 --steps 40

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache build src/*.egg-info
