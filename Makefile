# Two commands for a fresh machine:  `make run` (the whole pipeline on bundled MNIST) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run quick test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,micro,dev]"
	touch $@

run: setup  ## train, compress, export, evaluate and benchmark into runs/mnist/
	$(BIN)/edgeport run

quick: setup  ## the same path on a small subset (about a minute)
	$(BIN)/edgeport run --quick

test: setup  ## lint, then the test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

clean:
	rm -rf runs .pytest_cache
