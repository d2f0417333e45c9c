# The two commands of the README. Both run the idempotent set-up first.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint

setup:
	bash scripts/setup.sh

# Main job, end to end on the built-in default (`pointkd demo`): teacher, LSP student, ONNX + int8, bench, server.
demo: setup
	$(BIN)/pointkd demo --out runs/demo

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: setup lint
	$(BIN)/python -m pytest -q -n auto --dist worksteal --durations=15
