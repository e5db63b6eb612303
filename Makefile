# Two commands for a fresh machine:
#   make demo   installs into .venv and runs the main job on the embedded synthetic data
#   make test   installs the dev extra into .venv and runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
OUT    ?= runs/demo
# The exact versions the published figures were made with; `make CONSTRAINTS=` installs from the ranges instead.
CONSTRAINTS ?= constraints.txt
PIP_C   = $(if $(CONSTRAINTS),-c $(CONSTRAINTS),)

.PHONY: demo test test-fast check-readme install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install -q $(PIP_C) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(BIN)/pip install -q $(PIP_C) -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/rfcx-kit demo --out $(OUT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# The loop before every commit (under a minute): everything but the tests marked slow (tests/conftest.py).
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow" -x

# A fresh demo run must print the table README.md shows (.ci/check_readme.py states the tolerance).
check-readme: demo
	$(BIN)/python .ci/check_readme.py $(OUT)/summary.json README.md

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
