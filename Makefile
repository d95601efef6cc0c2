# The two commands of the quick start: `make demo` and `make test` (as root on Debian 12).
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: bootstrap demo test down
bootstrap:
	@bash scripts/bootstrap.sh

demo: bootstrap
	@bash scripts/demo.sh

test: bootstrap
	$(BIN)/pytest

down:
	$(BIN)/lrelease sandbox down
