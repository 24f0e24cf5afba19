# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Versions the test suite was last run with; pip resolves within them.
CONSTRAINTS := constraints.txt
# Test worker processes (pytest-xdist, one file per worker at a time): 2 fits the 2-core CI
# machine, where it takes the suite from 19 to 14 minutes; 0 runs in this process.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: demo test test-all install install-tests lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-examples: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[examples]"
	touch $@

$(VENV)/.installed-tests: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[dev]"
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 > /dev/null
	touch $@ $(VENV)/.installed-examples

install: $(VENV)/.installed-examples

install-tests: $(VENV)/.installed-tests

## make demo: install, then run every registered problem at small size into runs/
demo: install
	$(BIN)/sciml run all --quick --force

## make test: install with test extras, run the default suite (notebooks included)
test: install-tests
	$(PYTEST)

## make test-all: the default suite plus the slow, real-size tests
test-all: install-tests
	$(PYTEST) -m ""

lint: install-tests
	$(BIN)/ruff check sciml problems tests benchmarks

bench: install-tests
	$(BIN)/python benchmarks/fit_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
