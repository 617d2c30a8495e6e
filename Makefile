# Everything a developer needs, from a fresh clone with only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
.DEFAULT_GOAL := test

.PHONY: demo test tox lint typecheck dist bench clean

## demo: a scripted session of the command line tool (serve + 2 clients), end to end
demo:
	PYTHONPATH=$(CURDIR) $(PYTHON) examples/cli_demo.py

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,typecheck,lint]' tox build twine
	touch $(STAMP)

## test: run the tests and the type checks in .venv
test: $(STAMP)
	$(BIN)/python -m pytest
	$(BIN)/python -m mypy

## tox: the whole matrix (py39..py313, typecheck, lint)
tox: $(STAMP)
	$(BIN)/tox $(TOXARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/python -m mypy

## dist: build the sdist and wheel and check them with twine
dist: $(STAMP)
	rm -rf dist
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*

## bench: bulk write throughput against asyncio and a raw send loop
bench:
	$(PYTHON) benchmarks/bulk_write.py --mib 512 --repeat 5

clean:
	rm -rf $(VENV) .tox dist build *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis
