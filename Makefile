# The two entry points of the README: `make example` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install example services test test-fast bench lint clean

$(BIN)/goldmaster: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/goldmaster

example: install
	GOLDMASTER=$(abspath $(BIN)/goldmaster) examples/minilm/run.sh

# Installs and starts the container engine and the loopback registry the
# tests use; `scripts/services.sh stop` stops them.
services:
	scripts/services.sh install
	scripts/services.sh start
	scripts/services.sh base-images

test: install services
	PATH=$(abspath $(BIN)):$$PATH $(BIN)/pytest -q

test-fast: install
	$(BIN)/pytest -q -m "not slow and not engine and not registry"

bench: install
	$(MAKE) -C benchmarks

lint: install
	$(BIN)/ruff check src tests
	$(BIN)/mypy src

clean:
	rm -rf $(VENV) examples/minilm/work examples/minilm/out examples/minilm/restored
