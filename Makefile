# Two commands on a fresh machine with Python 3.11: `make demo` and `make test`
# (`make docs` builds the documentation site).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Versions the test suite was last run with; pip resolves within them.
CONSTRAINTS := constraints.txt
# Test worker processes (pytest-xdist, one file per worker at a time): 2 fits the 2-core CI
# machine, where it takes the suite from 19 to 14 minutes; 0 runs in this process.
PYTEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: demo demo-all test test-all docs notebooks install install-tests install-docs lint bench clean

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

$(VENV)/.installed-docs: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e ".[docs]"
	touch $@

install: $(VENV)/.installed-examples

install-tests: $(VENV)/.installed-tests

install-docs: $(VENV)/.installed-docs

## make demo: install, then one problem per family at small size into runs/demo/
## (runs/demo/report.md links every report and plot)
demo: install
	$(BIN)/sciml run demo --quick --force --out runs/demo

## make demo-all: every registered problem at small size into runs/ (about 20 minutes)
demo-all: install
	$(BIN)/sciml run all --quick --force

## make test: install with test extras, run the default suite (notebooks included)
test: install-tests
	$(PYTEST)

## make test-all: the default suite plus the slow, real-size tests
test-all: install-tests
	$(PYTEST) -m ""

## make docs: the documentation site into site/ (offline; the notebooks' stored outputs)
docs: install-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

## make notebooks: execute the notebooks in place, storing the outputs the site shows
notebooks: install-tests
	$(BIN)/python docs/execute_notebooks.py

lint: install-tests
	$(BIN)/ruff check sciml problems tests benchmarks

bench: install-tests
	$(BIN)/python benchmarks/fit_overhead.py

clean:
	rm -rf $(VENV) runs site .cache .pytest_cache
