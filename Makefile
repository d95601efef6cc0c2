# The two commands of the quick start: `make demo` and `make test` (as root on Debian 12).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap demo test down
bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@bash scripts/demo.sh

# Two workers, each with fleets of its own (tests/conftest.py), a test file's tests on one worker;
# TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: bootstrap
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

down:
	$(BIN)/lrelease sandbox down
