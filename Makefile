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

.PHONY: demo demo-birdclef test test-fast check-readme check-readme-birdclef install install-dev install-cpu bench clean

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
# A machine without a GPU: torch and torchvision from PyTorch's CPU index (about 0.7 GB instead of the 5.9 GB of
# PyPI's CUDA build), then the project and its dev extra. Needs that index reachable (not only PyPI).
install-cpu: | $(BIN)/python
	$(BIN)/pip install -q torch torchvision --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -q -e '.[dev]'
	touch $(VENV)/.installed-dev $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(BIN)/rfcx-kit demo --out $(OUT)

demo-birdclef: $(VENV)/.installed
	$(BIN)/rfcx-kit demo --profile birdclef --out $(OUT)-birdclef

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

# The loop before every commit (under a minute): everything but the tests marked slow (tests/conftest.py).
test-fast: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q -m "not slow" -x

# A fresh demo run must print the table README.md shows (.ci/check_readme.py states the tolerance).
check-readme: demo
	$(BIN)/python .ci/check_readme.py $(OUT)/summary.json README.md

check-readme-birdclef: demo-birdclef
	$(BIN)/python .ci/check_readme.py $(OUT)-birdclef/summary.json README.md --block birdclef-demo-table

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
