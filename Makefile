# riverbed — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: help venv demo test test-unit bench broker-start broker-stop clean

help:
	@echo "make demo    set up, start the local Kafka broker, replay a dataset with delayed labels, print a report"
	@echo "make test    set up and run the whole test suite (starts its own broker on port 19092)"
	@echo "make bench   throughput and latency benchmark (not part of make test)"
	@echo "make clean   remove the virtualenv and local state"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "riverbed needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/riverbed demo

test: venv
	$(BIN)/python -m pytest

test-unit: venv
	$(BIN)/python -m pytest -m "not broker"

bench: venv
	$(BIN)/python -m bench

broker-start: venv
	$(BIN)/riverbed broker start

broker-stop: venv
	$(BIN)/riverbed broker stop

clean:
	rm -rf $(VENV) riverbed-state *.egg-info
