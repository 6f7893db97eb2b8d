# The two entry points of the README: `make example` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The Docker Engine API socket that scripts/services.sh start serves with Podman.
ENGINE_HOST := unix:///tmp/goldmaster-podman.sock

.PHONY: install example services test test-fast bench lint clean

$(BIN)/goldmaster: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/goldmaster

# The example builds and restores a container image, so it starts the
# services first (as root, like `make test`).
example: install services
	DOCKER_HOST=$(ENGINE_HOST) GOLDMASTER=$(abspath $(BIN)/goldmaster) \
		examples/minilm/run.sh

# Installs and starts the container engine and the loopback registry the
# tests use, and builds the local base images; `scripts/services.sh stop`
# stops the engine and the registry.
services:
	scripts/services.sh install start base-images

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
	rm -rf $(VENV) examples/minilm/work examples/minilm/out examples/minilm/restored \
		examples/minilm/restored-image
