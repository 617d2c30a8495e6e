# Everything a developer needs, from a fresh clone with only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
.DEFAULT_GOAL := test

BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed

.PHONY: demo test tox lint typecheck dist bench bench-quick clean

## demo: a scripted session of the command line tool (serve + 2 clients), end to end
demo:
	PYTHONPATH=$(CURDIR) $(PYTHON) examples/cli_demo.py

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,typecheck,lint]' tox build twine
	touch $(STAMP)

## test: run the tests and the type checks in .venv (the lifecycle model
## gets a longer hunt here than in the tox matrix)
test: $(STAMP)
	LIFECYCLE_EXAMPLES=$${LIFECYCLE_EXAMPLES:-300} $(BIN)/python -m pytest
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

# The peers go in one by one: one that fails to install is reported missing.
$(BENCH_STAMP): benchmarks/requirements.txt setup.cfg
	rm -rf $(BENCH_VENV)
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet -e .
	for peer in $$(grep -v '^#' benchmarks/requirements.txt); do \
	    $(BENCH_VENV)/bin/python -m pip install --quiet "$$peer" || echo "bench: $$peer not installed"; \
	done
	touch $(BENCH_STAMP)

## bench: the benchmark suite against asyncio, uvloop, Twisted, tornado and the floor (~2 min here; the first run also installs the peers)
bench: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/suite.py

## bench-quick: a smaller run of the suite, under a minute
bench-quick: $(BENCH_STAMP)
	$(BENCH_VENV)/bin/python benchmarks/suite.py --quick --out benchmarks/results-quick

clean:
	rm -rf $(VENV) $(BENCH_VENV) .tox dist build *.egg-info .mypy_cache .pytest_cache .ruff_cache .hypothesis
