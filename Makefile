# revive: the two commands a fresh machine needs are `make train` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export NO_ALBUMENTATIONS_UPDATE := 1
export WANDB_SILENT := true
# pytest-xdist is not used: the suite is sized for 2 cores in one process

.PHONY: help install train test lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install revive with its dev tools

# `make train` runs the whole old-photo quickstart; `make train ARGS="experiment=..."` any other run
ARGS ?= experiment=bopb/quickstart

train: $(STAMP)  ## train every old-photo stage on the sample photos, then restore held-back ones
	$(BIN)/revive-train $(ARGS)

test: $(STAMP)  ## run the whole test suite
	$(BIN)/python -m pytest --nbmake tests notebooks $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check and format check
	$(BIN)/ruff check src tests experiments
	$(BIN)/ruff format --check src tests experiments

format: $(STAMP)  ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests experiments
	$(BIN)/ruff format src tests experiments

clean:  ## remove logs and caches (keeps .venv)
	rm -rf logs .pytest_cache
