# Two commands for a fresh machine:  `make run` (the whole pipeline on bundled MNIST) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run quick test check-wheel lint clean

setup: $(VENV)/.installed web/node_modules/.package-lock.json

# The browser runtimes of `edgeport serve` (onnxruntime-web, LiteRT.js), exactly as pinned in web/package-lock.json.
web/node_modules/.package-lock.json: web/package-lock.json
	@if command -v npm >/dev/null 2>&1; then cd web && npm ci --ignore-scripts --no-audit --no-fund; \
	else echo "npm not found: skipping web/ (edgeport serve's page and tests/web need it)"; fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[train,micro,serve,dev,scale]"
	touch $@

run: setup  ## train, compress, export, evaluate and benchmark into runs/mnist/
	$(BIN)/edgeport run

quick: setup  ## the same path on a small subset (about a minute)
	$(BIN)/edgeport run --quick

test: setup  ## lint, then the test suite
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

check-wheel: setup  ## build the wheel, install it with [serve] in a fresh venv, serve a run and open the page
	$(BIN)/python .ci/check_wheel.py

clean:
	rm -rf runs .pytest_cache build dist
