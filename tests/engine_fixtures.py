"""Fixtures for tests that need the container engine or the loopback registry.

scripts/services.sh starts both: Podman's Docker-compatible API on
unix:///tmp/goldmaster-podman.sock and a registry on 127.0.0.1:5000. A test
that needs them is skipped when they do not respond, unless
GOLDMASTER_REQUIRE_SERVICES=1 (as in CI), which makes it fail instead.

tests/conftest.py loads these fixtures as a plugin (``pytest_plugins``).
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from typing import Any, NamedTuple

import pytest

from goldmaster import container
from goldmaster.errors import EngineError

REQUIRE_SERVICES_VARIABLE = "GOLDMASTER_REQUIRE_SERVICES"
TEST_DOCKER_HOST = "unix:///tmp/goldmaster-podman.sock"
TEST_REGISTRY = "127.0.0.1:5000"
SETUP_HINT = "start them with: scripts/services.sh install start base-images"


class BaseImages(NamedTuple):
    """Base images that scripts/services.sh base-images builds locally."""

    busybox: str
    python: str
    """Debian bookworm with Python 3.11, pip and venv."""


BASE_IMAGES = BaseImages(
    busybox="localhost/busybox:local", python="localhost/debian-python:bookworm"
)


def services_unavailable(reason: str) -> None:
    """Skip the test, or fail it when GOLDMASTER_REQUIRE_SERVICES=1."""
    message = f"{reason}; {SETUP_HINT}"
    if os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def engine_host() -> str:
    """The test engine's address: DOCKER_HOST when set, else the services' socket."""
    return os.environ.get("DOCKER_HOST") or TEST_DOCKER_HOST


@pytest.fixture(scope="session")
def engine_client(engine_host: str) -> Any:
    """A Docker SDK client for the test engine, shared by the whole session."""
    try:
        return container.connect(engine_host)
    except EngineError as exc:
        services_unavailable(exc.message)


@pytest.fixture
def engine(
    engine_client: Any, engine_host: str, monkeypatch: pytest.MonkeyPatch
) -> Any:
    """A Docker SDK client for the test engine, with DOCKER_HOST set for this test.

    Library code under test then connects to the same engine. Tests without
    this fixture keep the caller's DOCKER_HOST, so they never build images
    by accident.
    """
    monkeypatch.setenv("DOCKER_HOST", engine_host)
    return engine_client


@pytest.fixture(scope="session")
def registry() -> str:
    """The loopback registry's base URL, such as ``http://127.0.0.1:5000``."""
    address = os.environ.get("GOLDMASTER_REGISTRY", TEST_REGISTRY)
    url = f"http://{address}"
    try:
        with urllib.request.urlopen(f"{url}/v2/", timeout=5) as response:
            response.read()
    except (urllib.error.URLError, OSError) as exc:
        services_unavailable(f"registry not reachable at {url}: {exc}")
    return url


@pytest.fixture
def base_image(engine: Any) -> BaseImages:
    """The names of the locally built base images, checked to be in the engine."""
    for name in BASE_IMAGES:
        if not container.image_exists(name, client=engine):
            services_unavailable(f"base image {name} not found in the engine")
    return BASE_IMAGES
