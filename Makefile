# riverbed — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: bench-soak bench-scale help venv system-deps compose-plugin demo lint test test-unit bench broker-start broker-stop clean

help:
	@echo "make demo    set up, start the local Kafka broker, replay a dataset with delayed labels, print a report"
	@echo "make test    set up, lint, and run the whole test suite (starts its own broker on port 19092)"
	@echo "make lint    ruff and mypy (configured in pyproject.toml) on the packages; ruff also on tests, bench and examples"
	@echo "make system-deps  Debian's prometheus and chromium for the operations tests (as root, when missing)"
	@echo "make bench   throughput and latency benchmark (not part of make test)"
	@echo "make bench-soak  1,000,000 events through a live processor: RSS, state, GC pauses"
	@echo "make bench-scale  1 trainer + 1, 2, 3 scorers on a 6-partition topic (taskset-pinned): events/s, CPU, latency, staleness"
	@echo "make clean   remove the virtualenv and local state"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "riverbed needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,examples]'
	@touch $(STAMP)

venv: $(STAMP)

# Debian packages some tests use: a real Prometheus server scraping riverbed, and headless
# Chromium rendering the status page. Installed only when missing, apt-get exists and we are
# root (CI is); otherwise those tests skip and say why.
SYSTEM_DEPS := prometheus chromium kcat

system-deps:
	@missing=""; for p in $(SYSTEM_DEPS); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if ! command -v apt-get >/dev/null 2>&1; then echo "system-deps: no apt-get to install$$missing; the tests that need them will skip"; exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then echo "system-deps: not root, not installing$$missing (sudo make system-deps); the tests that need them will skip"; exit 0; fi; \
	echo "system-deps: apt-get install$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; } \
	  || echo "system-deps: apt-get failed; the tests that need$$missing will skip"

# `docker compose config` validates docker-compose.yml without an engine. Where the docker client
# has no compose plugin but Go is installed, build the pinned plugin from the Go module proxy
# (about 2.5 minutes on 2 cores, once); otherwise the validation test skips and says why.
COMPOSE_VERSION := v2.29.7
COMPOSE_PLUGIN := $(HOME)/.docker/cli-plugins/docker-compose

compose-plugin:
	@if ! command -v docker >/dev/null 2>&1 || docker compose version >/dev/null 2>&1; then exit 0; fi; \
	if ! command -v go >/dev/null 2>&1; then echo "compose-plugin: no go toolchain; the compose validation test will skip"; exit 0; fi; \
	echo "compose-plugin: building docker compose $(COMPOSE_VERSION) from the Go module proxy (once)"; \
	tmp=$$(mktemp -d); \
	if GOFLAGS=-mod=mod GOBIN=$$tmp go install github.com/docker/compose/v2/cmd@$(COMPOSE_VERSION) >$$tmp/build.log 2>&1; then \
	  mkdir -p $(dir $(COMPOSE_PLUGIN)) && mv $$tmp/cmd $(COMPOSE_PLUGIN) && chmod +x $(COMPOSE_PLUGIN); \
	else echo "compose-plugin: build failed (see $$tmp/build.log); the compose validation test will skip"; fi

demo: venv
	$(BIN)/riverbed demo

# ruff and mypy read their settings from pyproject.toml.
PACKAGES := riverbed stream learners state

lint: venv
	$(BIN)/ruff check $(PACKAGES) tests bench examples
	$(BIN)/mypy $(PACKAGES)

test: venv lint system-deps compose-plugin
	$(BIN)/python -m pytest

test-unit: venv
	$(BIN)/python -m pytest -m "not broker"

bench: venv
	$(BIN)/python -m bench

# the soak (1,000,000 events at half the sustained rate; about 10 minutes)
bench-soak: venv
	$(BIN)/python -m bench --rows soak --out bench/results/soak.json

# the scale-out rows (riverbed run --role trainer|scorer subprocesses; about 1 minute per model)
bench-scale: venv
	$(BIN)/python -m bench --rows scale --out bench/results/scale.json

broker-start: venv
	$(BIN)/riverbed broker start

broker-stop: venv
	$(BIN)/riverbed broker stop

clean:
	rm -rf $(VENV) riverbed-state *.egg-info
