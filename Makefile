# The two commands of the README. Each creates .venv on first use (Python 3.11+ and the
# package index are all a fresh machine needs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: example test lint bench dist clean

DOCS := deployserver/OUTBOUND.md

example: $(STAMP)  ## run the example app's suite under the plugin (enforce), print its report,
	## regenerate examples/deployserver/OUTBOUND.md and fail if the committed page was stale
	cd examples && ../$(BIN)/python -m pytest --outbound-docs-check $(DOCS) --outbound-docs $(DOCS)

test: $(STAMP)  ## lint, format check, mypy strict, and the whole test suite
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2

bench: $(STAMP)  ## the benchmarks (run by hand; results in benchmarks/RESULTS.md)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py

dist: $(STAMP)  ## build the wheel into dist/ (pip install dist/*.whl; the index release is pending)
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation . -w dist

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
