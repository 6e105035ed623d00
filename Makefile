# make run   : set up .venv and run the default experiment (predictor-guided NAS on real NAS-Bench-201 data)
# make test  : set up .venv (with the dev extras) and run the default test suite (the command CI runs)
# make test PY=python3.12 VENV=.venv312 : the same in another interpreter's venv (Python >= 3.12 gets jax 0.12)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test test-all bench clean
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[sweep]"
	touch $@

setup: $(VENV)/.installed

run: $(VENV)/.installed-run
	$(BIN)/python -m metanas

# -n auto: one pytest worker per core (xdist); the suite is mostly XLA compilation, which is single-threaded
test: setup
	$(BIN)/python -m pytest -m "not slow and not gpu" -q -n auto --dist worksteal

test-all: setup
	$(BIN)/python -m pytest -q -n auto --dist worksteal

clean:
	rm -rf $(VENV) .venv312 results/runs results/multirun

# Benchmarks side by side with the PyTorch peers of ../shared/bench (their exact venv: torch 2.13.0+cpu, xautodl --no-deps)
PEER := .venv-peer
$(PEER)/.installed:
	$(PY) -m venv $(PEER)
	$(PEER)/bin/pip install -q "torch==2.13.0+cpu" "numpy==2.4.6"
	$(PEER)/bin/pip install -q --no-deps xautodl==1.0.0
	touch $@

bench: setup $(PEER)/.installed
	$(BIN)/python bench/compare.py --peer-python $(PEER)/bin/python
