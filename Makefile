# The two commands of the README. Both run the idempotent set-up first.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

# Main job, end to end on the built-in default: train the quickstart student on ModelNet40 and evaluate it.
demo: setup
	$(BIN)/pointkd data info
	$(BIN)/pointkd train --config quickstart --out runs/quickstart --resume
	$(BIN)/pointkd eval runs/quickstart/best.pt --out runs/quickstart/eval

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest -q
