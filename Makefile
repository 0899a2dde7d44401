# The README's two commands are `make demo` and `make test`; everything else supports them.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# demo-secure runs its own secure broker here, beside (never instead of) the plain one on 9092
SECURE_PORT ?= 9192


.PHONY: setup demo demo-secure test test-fast lint broker-up broker-down clean help

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: $(STAMP)  ## Create .venv and install the project with its dev tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Python 3.11+ is needed (found $$($(PYTHON) --version))"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $(STAMP)

demo: setup  ## Local Kafka, the units, the gateway: run journeys and show their bills
	$(BIN)/mbs demo

demo-secure: setup  ## The same demo on its own SASL/SCRAM broker with ACLs (port 9192)
	MBS_BROKER_PORT=$(SECURE_PORT) $(BIN)/mbs demo --secure

test: setup  ## The whole suite (starts the real Kafka broker if none is running)
	$(BIN)/pytest --durations=15

test-fast: setup  ## Only the in-memory tests, no broker needed
	$(BIN)/pytest tests/unit

lint: setup  ## ruff and mypy
	$(BIN)/ruff check .
	$(BIN)/mypy

broker-up: setup  ## Start the local broker and leave it running
	$(BIN)/mbs broker up

broker-down: setup  ## Stop the local broker
	$(BIN)/mbs broker down

clean:  ## Remove the virtualenv and caches (keeps the Kafka jar cache)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
